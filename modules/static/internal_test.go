package static

import (
	"reflect"
	"testing"
)

func TestParseRanges(t *testing.T) {
	for _, tc := range []struct {
		spec string
		size int64
		max  int
		want []byteRange
		res  rangesResult
	}{
		{"0-0", 10, -1, []byteRange{{0, 1}}, rangesOK},
		{"0-", 10, -1, []byteRange{{0, 10}}, rangesOK},
		{"9-", 10, -1, []byteRange{{9, 10}}, rangesOK},
		{"10-", 10, -1, nil, rangesUnsatisfiable},
		{"-1", 10, -1, []byteRange{{9, 10}}, rangesOK},
		{"-0", 10, -1, nil, rangesUnsatisfiable},
		{"-20", 10, -1, []byteRange{{0, 10}}, rangesOK},
		{"2-5,7-8", 10, -1, []byteRange{{2, 6}, {7, 9}}, rangesOK},
		{" 2 - 5 , 7-8 ", 10, -1, []byteRange{{2, 6}, {7, 9}}, rangesOK},
		{"2-5,20-30", 10, -1, []byteRange{{2, 6}}, rangesOK},
		{"5-2", 10, -1, nil, rangesUnsatisfiable},
		{"0-0,0-9", 10, -1, nil, rangesNone}, // 11 bytes of a 10-byte file
		{"0-1,2-3,4-5", 10, 2, nil, rangesNone},
		{"0-1,2-3", 10, 2, []byteRange{{0, 2}, {2, 4}}, rangesOK},
		{"0-", 0, -1, nil, rangesNone},
		{"", 10, -1, nil, rangesUnsatisfiable},
		{"1-2x", 10, -1, nil, rangesUnsatisfiable},
		{"1-2,", 10, -1, nil, rangesUnsatisfiable},
		{"-", 10, -1, nil, rangesUnsatisfiable},
		{"9223372036854775807-", 10, -1, nil, rangesUnsatisfiable},
		{"92233720368547758070-", 10, -1, nil, rangesUnsatisfiable},
		{"0-92233720368547758070", 10, -1, nil, rangesUnsatisfiable},
	} {
		got, res := parseRanges(tc.spec, tc.size, tc.max)
		if res != tc.res || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseRanges(%q, %d, %d) = %v, %d; want %v, %d", tc.spec, tc.size, tc.max, got, res, tc.want, tc.res)
		}
	}
}

func TestMatchETag(t *testing.T) {
	const e = `"5f-a"`
	for _, tc := range []struct {
		list string
		weak bool
		want bool
	}{
		{`"5f-a"`, false, true},
		{`W/"5f-a"`, false, false},
		{`W/"5f-a"`, true, true},
		{`"x", "5f-a"`, false, true},
		{`"x",W/"5f-a" ,"y"`, true, true},
		{`"5f-ab"`, false, false},
		{`"5f-a"x`, false, false},
		{`"5f`, false, false},
		{`*`, false, true},
		{` * `, true, true},
		{`"x"`, true, false},
	} {
		if got := matchETag(tc.list, e, tc.weak); got != tc.want {
			t.Errorf("matchETag(%q, weak=%v) = %v", tc.list, tc.weak, got)
		}
	}
	if matchETag("*", "", false) {
		t.Error(`"*" matched a response without an ETag`)
	}
}

func TestExtension(t *testing.T) {
	for uri, want := range map[string]string{
		"/a.html": "html", "/a.tar.gz": "gz", "/.htaccess": "", "/dir.d/file": "", "/x/.a.b": "b",
		"/": "", "/a.": "", "/noext": "", "/a/b.JPG": "JPG",
	} {
		if got := extension(uri); got != want {
			t.Errorf("extension(%q) = %q, want %q", uri, got, want)
		}
	}
}

func TestWithRel(t *testing.T) {
	for rel, want := range map[string]string{
		"/a/b": "a/b", "a//b/": "a/b", "/": ".", "": ".", "./a/./b": "a/b",
	} {
		got, err := target{}.withRel(rel)
		if err != nil || got.rel != want {
			t.Errorf("withRel(%q) = %q, %v; want %q", rel, got.rel, err, want)
		}
	}
	for _, rel := range []string{"../a", "a/../b", "a/..", "a\x00b"} {
		if _, err := (target{}).withRel(rel); err == nil {
			t.Errorf("withRel(%q) accepted", rel)
		}
	}
	if !within("/srv/", "/srv") || !within("/srv/", "/srv/a/../b") || within("/srv/", "/srv/..") || within("/srv/", "/srvx") {
		t.Error("within is wrong")
	}
}
