package subfilter

import (
	"strings"
	"testing"
)

// Every way of cutting a body in three pieces gives what replacing in the whole body
// gives: matches that span pieces are found, partial matches are handed on intact.
func TestFilterAcrossPieces(t *testing.T) {
	body := "xx<A href=\"http://a/\">one</a> <a HREF=\"http://a/\">two</a> <a href=\"http://b/\"> <a href=\"http://"
	for _, once := range []bool{true, false} {
		want := body
		for _, p := range [][2]string{{`<a href="http://a/`, `<a href="https://h/`}, {`"http://b/`, `"/b/`}} {
			n := -1
			if once {
				n = 1
			}
			want = replaceFold(want, p[0], p[1], n)
		}
		for i := 0; i <= len(body); i++ {
			for j := i; j <= len(body); j++ {
				st := &state{once: once}
				for _, p := range [][2]string{{`<a href="http://a/`, `<a href="https://h/`}, {`"http://b/`, `"/b/`}} {
					st.pats = append(st.pats, []byte(lowerASCII(p[0])))
					st.repls = append(st.repls, []byte(p[1]))
					st.max = max(st.max, len(p[0]))
				}
				st.left = len(st.pats)
				var got []byte
				got = append(got, st.filter([]byte(body[:i]), false)...)
				got = append(got, st.filter([]byte(body[i:j]), false)...)
				got = append(got, st.filter([]byte(body[j:]), true)...)
				if string(got) != want {
					t.Fatalf("once=%v cut at %d,%d:\n got %q\nwant %q", once, i, j, got, want)
				}
			}
		}
	}
}

// replaceFold replaces the first n (all if n < 0) case-insensitive matches of old.
func replaceFold(s, old, repl string, n int) string {
	var b strings.Builder
	low, lowOld := strings.ToLower(s), strings.ToLower(old)
	for n != 0 {
		i := strings.Index(low, lowOld)
		if i < 0 {
			break
		}
		b.WriteString(s[:i] + repl)
		s, low = s[i+len(old):], low[i+len(old):]
		n--
	}
	b.WriteString(s)
	return b.String()
}

// BenchmarkFilter streams a 64 KB HTML piece with two strings to find (replaced once
// each, then looked for no more; and every occurrence).
func BenchmarkFilter(b *testing.B) {
	piece := []byte(strings.Repeat(`<p>text <a href="http://127.0.0.1:8080/x">link</a></p>`+"\n", 64<<10/56))
	for _, once := range []bool{true, false} {
		b.Run(map[bool]string{true: "once", false: "all"}[once], func(b *testing.B) {
			b.SetBytes(int64(len(piece)))
			st := &state{once: once}
			for _, p := range [][2]string{{`<a href="http://127.0.0.1:8080/`, `<a href="/`}, {`<img src="http://127.0.0.1:8080/`, `<img src="/`}} {
				st.pats = append(st.pats, []byte(lowerASCII(p[0])))
				st.repls = append(st.repls, []byte(p[1]))
				st.max = max(st.max, len(p[0]))
			}
			st.left = len(st.pats)
			for b.Loop() {
				st.filter(piece, false)
			}
		})
	}
}
