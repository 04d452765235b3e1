package pcre

import (
	"reflect"
	"regexp"
	"sync"
	"testing"
)

func TestPCREOnlySyntax(t *testing.T) {
	for _, c := range []struct {
		expr, subj string
		want       []string
	}{
		{`^/(?!admin)(\w+)`, "/user", []string{"/user", "user"}},
		{`^/(?!admin)(\w+)`, "/admin", nil},
		{`(?<=/v)(\d+)`, "/api/v12/x", []string{"12", "12"}},
		{`^(\w)\w*\1$`, "abca", []string{"abca", "a"}},
		{`^(\w)\w*\1$`, "abcd", nil},
		{`^(?>a+)b`, "aaab", []string{"aaab"}},
		{`^a++b`, "aab", []string{"aab"}},
		{`^/(?<id>\d+)/(?P<name>\w+)$`, "/42/bob", []string{"/42/bob", "42", "bob"}},
		{`(a)|(b)`, "b", []string{"b", "", "b"}},
	} {
		re, err := Compile(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		if got := re.FindStringSubmatch(c.subj); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s on %q: got %q, want %q", c.expr, c.subj, got, c.want)
		}
		if re.MatchString(c.subj) != (c.want != nil) {
			t.Errorf("%s on %q: MatchString disagrees", c.expr, c.subj)
		}
	}
}

func TestNamesAndUnsetGroups(t *testing.T) {
	re := MustCompile(`^/(?<id>\d+)(x)?(?<tail>/.*)?$`)
	if got, want := re.SubexpNames(), []string{"", "id", "", "tail"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("names %q, want %q", got, want)
	}
	if got, want := re.FindStringSubmatchIndex("/42"), []int{0, 3, 1, 3, -1, -1, -1, -1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("index %v, want %v", got, want)
	}
}

func TestFlags(t *testing.T) {
	if !MustCompileFlags(t, `^/ABC`, Caseless).MatchString("/abc") {
		t.Error("Caseless")
	}
	if MustCompileFlags(t, `^b`, 0).MatchString("a\nb") || !MustCompileFlags(t, `^b`, Multiline).MatchString("a\nb") {
		t.Error("Multiline")
	}
	if !MustCompileFlags(t, `a.b`, Dotall).MatchString("a\nb") {
		t.Error("Dotall")
	}
	if !MustCompileFlags(t, `a b # comment`, Extended).MatchString("ab") {
		t.Error("Extended")
	}
	if MustCompileFlags(t, `b`, Anchored).MatchString("ab") {
		t.Error("Anchored")
	}
	// Bytes by default, as nginx: "." is one byte of "é"; with UTF it is the character.
	if got := MustCompileFlags(t, `^.$`, 0).MatchString("é"); got {
		t.Error("byte mode matched a two-byte character with one dot")
	}
	if got := MustCompileFlags(t, `^.$`, UTF).MatchString("é"); !got {
		t.Error("UTF mode did not match one character")
	}
	if _, err := CompileFlags(`^.$`, UTF); err != nil {
		t.Fatal(err)
	}
}

func MustCompileFlags(t *testing.T, expr string, f Flags) *Regexp {
	t.Helper()
	re, err := CompileFlags(expr, f)
	if err != nil {
		t.Fatal(err)
	}
	return re
}

func TestCompileError(t *testing.T) {
	_, err := Compile(`^/(abc`)
	e, ok := err.(*Error)
	if !ok || e.Offset != 6 || e.Msg == "" {
		t.Fatalf("got %#v", err)
	}
	if got := err.Error(); got != `missing closing parenthesis at offset 6 in "^/(abc"` {
		t.Fatalf("message %q", got)
	}
}

func TestMatchAtLooksBehindStart(t *testing.T) {
	re := MustCompile(`\bfoo`)
	ovec := make([]int, 2)
	if ok, _ := re.MatchAt("xfoo", 1, ovec); ok {
		t.Error(`\b matched inside a word at the start offset`)
	}
	if ok, _ := re.MatchAt("x foo", 1, ovec); !ok || ovec[0] != 2 {
		t.Errorf("got %v %v", ok, ovec)
	}
	if ok, _ := re.MatchAt("foo", 4, ovec); ok {
		t.Error("matched past the end")
	}
}

func TestFindAll(t *testing.T) {
	cases := []struct {
		expr, subj string
		want       [][]int
	}{
		{`\d+`, "a1b22c333", [][]int{{1, 2}, {3, 5}, {6, 9}}},
		{`a*`, "baa", [][]int{{0, 0}, {1, 3}, {3, 3}}},
		{`x`, "", nil},
		{``, "ab", [][]int{{0, 0}, {1, 1}, {2, 2}}},
	}
	for _, c := range cases {
		if got := MustCompile(c.expr).FindAllStringSubmatchIndex(c.subj, -1); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s on %q: got %v, want %v", c.expr, c.subj, got, c.want)
		}
	}
	if got := MustCompileFlags(t, ``, UTF).FindAllStringSubmatchIndex("éa", -1); !reflect.DeepEqual(got, [][]int{{0, 0}, {2, 2}, {3, 3}}) {
		t.Errorf("UTF empty matches step over whole characters: got %v", got)
	}
	if got := MustCompile(`\d`).FindAllStringSubmatchIndex("123", 2); len(got) != 2 {
		t.Errorf("limit: got %v", got)
	}
}

func TestMatchLimit(t *testing.T) {
	// Catastrophic backtracking gives up with an error instead of running for ever.
	re := MustCompile(`^(a+)+$`)
	subj := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"
	_, err := re.MatchAt(subj, 0, make([]int, 4))
	if err != ErrMatchLimit {
		t.Fatalf("got %v, want ErrMatchLimit", err)
	}
}

func TestConcurrentMatches(t *testing.T) {
	re := MustCompile(`^/(\w+)/(\d+)$`)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				m := re.FindStringSubmatch("/user/1234")
				if len(m) != 3 || m[1] != "user" || m[2] != "1234" {
					t.Errorf("got %q", m)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkLocationMatch(b *testing.B) {
	re := MustCompile(`^/api/v(\d+)/users/(\w+)$`)
	ovec := make([]int, 6)
	for b.Loop() {
		re.MatchAt("/api/v2/users/alice", 0, ovec)
	}
}

func BenchmarkLocationMatchGoRegexp(b *testing.B) {
	re := regexp.MustCompile(`^/api/v(\d+)/users/(\w+)$`)
	for b.Loop() {
		re.FindStringSubmatchIndex("/api/v2/users/alice")
	}
}
