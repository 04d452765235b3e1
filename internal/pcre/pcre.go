// Package pcre is spindle's regular-expression engine: PCRE2 (Debian's libpcre2-8) with
// its JIT, through cgo. nginx and ngx_lua match with PCRE, so spindle does too: a
// location, server_name, rewrite or ngx.re regex that works in nginx (lookarounds,
// backreferences, atomic groups, possessive quantifiers) works here with the same
// meaning. Subjects and patterns are bytes, as in nginx, unless UTF is asked for.
//
// One match is one cgo call. Its match data lives in a per-OS-thread slot on the C
// side, so no Go-side lock or allocation is needed to share a compiled Regexp between
// goroutines: a cgo call runs to completion on its own thread and nothing else uses
// that thread's slot meanwhile.
package pcre

/*
#cgo pkg-config: libpcre2-8
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

static __thread pcre2_match_data *spindle_md;
static __thread uint32_t spindle_md_pairs;

// spindle_match runs one match and copies the offsets into out (2 longs per pair,
// -1 for an unset group). It returns PCRE2's result: >0 the number of pairs set,
// PCRE2_ERROR_NOMATCH, or another negative error code.
static int spindle_match(pcre2_code *code, const unsigned char *subj, size_t len,
		size_t start, uint32_t options, uint32_t pairs, long *out) {
	if (spindle_md == NULL || spindle_md_pairs < pairs) {
		if (spindle_md != NULL) pcre2_match_data_free(spindle_md);
		uint32_t n = pairs < 32 ? 32 : pairs;
		spindle_md = pcre2_match_data_create(n, NULL);
		if (spindle_md == NULL) { spindle_md_pairs = 0; return PCRE2_ERROR_NOMEMORY; }
		spindle_md_pairs = n;
	}
	int rc = pcre2_match(code, subj, len, start, options, spindle_md, NULL);
	if (rc < 0) return rc;
	if (rc == 0) rc = (int)spindle_md_pairs;
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(spindle_md);
	uint32_t n = (uint32_t)rc < pairs ? (uint32_t)rc : pairs;
	for (uint32_t i = 0; i < 2*n; i++) out[i] = ov[i] == PCRE2_UNSET ? -1 : (long)ov[i];
	for (uint32_t i = 2*n; i < 2*pairs; i++) out[i] = -1;
	return rc;
}

static pcre2_code *spindle_compile(const unsigned char *pat, size_t len, uint32_t options,
		int *errcode, size_t *erroff) {
	return pcre2_compile(pat, len, options, errcode, erroff, NULL);
}

static uint32_t spindle_info32(pcre2_code *code, uint32_t what) {
	uint32_t v = 0;
	pcre2_pattern_info(code, what, &v);
	return v;
}

static PCRE2_SPTR spindle_name_table(pcre2_code *code) {
	PCRE2_SPTR t = NULL;
	pcre2_pattern_info(code, PCRE2_INFO_NAMETABLE, &t);
	return t;
}

static int spindle_error_message(int code, unsigned char *buf, size_t len) {
	return pcre2_get_error_message(code, buf, len);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"unsafe"
)

// Flags are compile options, PCRE2's meaning.
type Flags uint32

// The compile options spindle uses. ngx_lua's option letters map onto them (see
// ParseLuaOptions).
const (
	Caseless  Flags = C.PCRE2_CASELESS  // "i", location ~*
	Multiline Flags = C.PCRE2_MULTILINE // "m"
	Dotall    Flags = C.PCRE2_DOTALL    // "s"
	Extended  Flags = C.PCRE2_EXTENDED  // "x"
	Anchored  Flags = C.PCRE2_ANCHORED  // "a"
	UTF       Flags = C.PCRE2_UTF       // "u": the pattern and subjects are UTF-8
	DupNames  Flags = C.PCRE2_DUPNAMES  // "D"
	// NoUTFCheck skips the UTF-8 validity check of subjects ("U" in ngx_lua): the
	// caller vouches for them.
	NoUTFCheck Flags = C.PCRE2_MATCH_INVALID_UTF
)

// Regexp is a compiled PCRE2 pattern. It is safe for concurrent use.
type Regexp struct {
	code  *C.pcre2_code
	expr  string
	flags Flags
	pairs int // capture groups + 1
	names []string
	jit   bool
}

// ErrMatchLimit is returned when a match gives up: PCRE2's backtracking or JIT stack
// limit was reached (a pathological pattern on a long subject).
var ErrMatchLimit = errors.New("pcre: match limit exceeded")

// Error is a compile error with the offset in the pattern where PCRE2 stopped.
type Error struct {
	Expr   string
	Offset int
	Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s at offset %d in %q", e.Msg, e.Offset, e.Expr)
}

// Compile compiles expr with no options, as nginx compiles a case-sensitive location.
func Compile(expr string) (*Regexp, error) { return CompileFlags(expr, 0) }

// MustCompile is Compile that panics on error, for patterns fixed in the source.
func MustCompile(expr string) *Regexp {
	re, err := Compile(expr)
	if err != nil {
		panic(err)
	}
	return re
}

var empty = [1]byte{0}

func bytesOf(s string) *C.uchar {
	if len(s) == 0 {
		return (*C.uchar)(unsafe.Pointer(&empty[0]))
	}
	return (*C.uchar)(unsafe.Pointer(unsafe.StringData(s)))
}

// CompileFlags compiles expr with options, then JIT-compiles it where the platform
// allows (PCRE2's JIT matches several times faster than its interpreter).
func CompileFlags(expr string, flags Flags) (*Regexp, error) {
	var errcode C.int
	var erroff C.size_t
	opts := uint32(flags) &^ uint32(NoUTFCheck)
	if flags&NoUTFCheck != 0 {
		opts |= C.PCRE2_UTF | C.PCRE2_MATCH_INVALID_UTF
	}
	code := C.spindle_compile(bytesOf(expr), C.size_t(len(expr)), C.uint32_t(opts), &errcode, &erroff)
	runtime.KeepAlive(expr)
	if code == nil {
		return nil, &Error{Expr: expr, Offset: int(erroff), Msg: message(int(errcode))}
	}
	re := &Regexp{code: code, expr: expr, flags: flags}
	re.jit = C.pcre2_jit_compile(code, C.PCRE2_JIT_COMPLETE) == 0
	re.pairs = int(C.spindle_info32(code, C.PCRE2_INFO_CAPTURECOUNT)) + 1
	re.names = make([]string, re.pairs)
	if n := int(C.spindle_info32(code, C.PCRE2_INFO_NAMECOUNT)); n > 0 {
		size := int(C.spindle_info32(code, C.PCRE2_INFO_NAMEENTRYSIZE))
		table := unsafe.Slice((*byte)(unsafe.Pointer(C.spindle_name_table(code))), n*size)
		for i := 0; i < n; i++ {
			ent := table[i*size : (i+1)*size]
			group := int(ent[0])<<8 | int(ent[1])
			name := ent[2:]
			for j, c := range name {
				if c == 0 {
					name = name[:j]
					break
				}
			}
			if group < len(re.names) && re.names[group] == "" {
				re.names[group] = string(name)
			}
		}
	}
	runtime.AddCleanup(re, func(c *C.pcre2_code) { C.pcre2_code_free(c) }, code)
	return re, nil
}

func message(code int) string {
	var buf [256]C.uchar
	n := C.spindle_error_message(C.int(code), &buf[0], C.size_t(len(buf)))
	if n < 0 {
		return "pcre2 error " + strconv.Itoa(code)
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), int(n)))
}

// String returns the source text of the pattern.
func (re *Regexp) String() string { return re.expr }

// JIT reports whether the pattern was JIT-compiled.
func (re *Regexp) JIT() bool { return re.jit }

// NumSubexp returns the number of capture groups.
func (re *Regexp) NumSubexp() int { return re.pairs - 1 }

// SubexpNames returns the names of the groups; [0] and unnamed groups are "". The
// slice is shared: do not modify it.
func (re *Regexp) SubexpNames() []string { return re.names }

// Code is the compiled pattern (a pcre2_code in C memory) for callers that match in
// C themselves (modules/ngxlua's ngx.re through LuaJIT's FFI). It is freed once re
// is unreachable: keep re while the pointer is in use.
func (re *Regexp) Code() unsafe.Pointer { return unsafe.Pointer(re.code) }

// MatchAt matches s starting at byte offset start (lookbehinds and \b see the bytes
// before start, as PCRE's start offset does) and writes the offset pairs of the match
// and of every group into ovec, which must hold 2*(NumSubexp()+1) ints; unset groups
// are -1. It reports whether there was a match; err is non-nil only when PCRE2 gave up.
func (re *Regexp) MatchAt(s string, start int, ovec []int) (bool, error) {
	if start > len(s) {
		return false, nil
	}
	if len(ovec) < 2*re.pairs {
		panic("pcre: ovec too short")
	}
	rc := C.spindle_match(re.code, bytesOf(s), C.size_t(len(s)), C.size_t(start), 0,
		C.uint32_t(re.pairs), (*C.long)(unsafe.Pointer(&ovec[0])))
	runtime.KeepAlive(s)
	runtime.KeepAlive(re)
	switch {
	case rc > 0:
		return true, nil
	case rc == C.PCRE2_ERROR_NOMATCH:
		return false, nil
	case rc == C.PCRE2_ERROR_MATCHLIMIT || rc == C.PCRE2_ERROR_DEPTHLIMIT ||
		rc == C.PCRE2_ERROR_HEAPLIMIT || rc == C.PCRE2_ERROR_JIT_STACKLIMIT:
		return false, ErrMatchLimit
	default:
		return false, fmt.Errorf("pcre: %s", message(int(rc)))
	}
}

// FindStringSubmatchIndex returns the offset pairs of the leftmost match and its
// groups, or nil; a match that PCRE2 gives up on counts as no match.
func (re *Regexp) FindStringSubmatchIndex(s string) []int {
	ovec := make([]int, 2*re.pairs)
	if ok, _ := re.MatchAt(s, 0, ovec); !ok {
		return nil
	}
	return ovec
}

// FindStringSubmatch returns the text of the leftmost match and of its groups ("" for
// an unset group), or nil.
func (re *Regexp) FindStringSubmatch(s string) []string {
	m := re.FindStringSubmatchIndex(s)
	if m == nil {
		return nil
	}
	out := make([]string, re.pairs)
	for i := range out {
		if m[2*i] >= 0 {
			out[i] = s[m[2*i]:m[2*i+1]]
		}
	}
	return out
}

// FindString returns the text of the leftmost match, or "".
func (re *Regexp) FindString(s string) string {
	if m := re.FindStringSubmatchIndex(s); m != nil {
		return s[m[0]:m[1]]
	}
	return ""
}

// MatchString reports whether s contains a match.
func (re *Regexp) MatchString(s string) bool {
	var small [8]int
	ovec := small[:]
	if 2*re.pairs > len(small) {
		ovec = make([]int, 2*re.pairs)
	}
	ok, _ := re.MatchAt(s, 0, ovec)
	return ok
}

// FindAllStringSubmatchIndex returns up to n successive non-overlapping matches (all
// when n < 0), as PCRE's global matching finds them: after an empty match the next
// attempt starts one character further (one byte, or one UTF-8 sequence in UTF mode).
func (re *Regexp) FindAllStringSubmatchIndex(s string, n int) [][]int {
	var all [][]int
	pos := 0
	for n < 0 || len(all) < n {
		ovec := make([]int, 2*re.pairs)
		ok, _ := re.MatchAt(s, pos, ovec)
		if !ok {
			break
		}
		all = append(all, ovec)
		if ovec[1] > ovec[0] {
			pos = ovec[1]
			continue
		}
		// An empty match: step past one character.
		if ovec[1] >= len(s) {
			break
		}
		pos = ovec[1] + 1
		if re.flags&(UTF|NoUTFCheck) != 0 {
			for pos < len(s) && s[pos]&0xC0 == 0x80 {
				pos++
			}
		}
	}
	return all
}
