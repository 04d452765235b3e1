package authbasic

import (
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"strconv"
	"strings"
)

// shaCrypt is Ulrich Drepper's SHA-crypt ($5$ SHA-256, $6$ SHA-512), the scheme of
// glibc's crypt(3) that nginx verifies through it and `openssl passwd -5/-6` and
// mkpasswd write; implemented from the published specification ("Unix crypt using
// SHA-256 and SHA-512"), with its rounds=N option (default 5000, clamped to
// 1000..999999999). rest is the field after the magic.
func shaCrypt(password, rest, magic string) string {
	newHash := sha256.New
	if magic == "$6$" {
		newHash = sha512.New
	}
	rounds, custom := 5000, false
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		if i := strings.IndexByte(r, '$'); i > 0 {
			if n, err := strconv.ParseUint(r[:i], 10, 64); err == nil {
				rounds, custom, rest = int(min(max(n, 1000), 999999999)), true, r[i+1:]
			}
		}
	}
	salt := rest
	if i := strings.IndexByte(salt, '$'); i >= 0 {
		salt = salt[:i]
	}
	if len(salt) > 16 {
		salt = salt[:16]
	}
	p, s := []byte(password), []byte(salt)

	b := sum(newHash, p, s, p)
	size := len(b)
	h := newHash()
	h.Write(p)
	h.Write(s)
	n := len(p)
	for ; n > size; n -= size {
		h.Write(b)
	}
	h.Write(b[:n])
	for n := len(p); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(p)
		}
	}
	a := h.Sum(nil)

	h.Reset()
	for range len(p) {
		h.Write(p)
	}
	pSeq := repeatTo(h.Sum(nil), len(p))
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(s)
	}
	sSeq := repeatTo(h.Sum(nil), len(s))

	c := a
	for i := 0; i < rounds; i++ {
		h.Reset()
		if i&1 != 0 {
			h.Write(pSeq)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sSeq)
		}
		if i%7 != 0 {
			h.Write(pSeq)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pSeq)
		}
		c = h.Sum(c[:0])
	}

	var out strings.Builder
	out.WriteString(magic)
	if custom {
		out.WriteString("rounds=" + strconv.Itoa(rounds) + "$")
	}
	out.WriteString(salt)
	out.WriteByte('$')
	to64 := func(b2, b1, b0 byte, n int) {
		w := uint32(b2)<<16 | uint32(b1)<<8 | uint32(b0)
		for ; n > 0; n-- {
			out.WriteByte(itoa64[w&0x3f])
			w >>= 6
		}
	}
	// The specification's byte order: groups of three bytes a third of the digest
	// apart, rotated by one place each group (one way for SHA-256, the other for
	// SHA-512).
	third := size / 3
	for k := 0; k < third; k++ {
		x, y, z := c[k], c[k+third], c[k+2*third]
		rot := k % 3
		if size == 64 && rot != 0 {
			rot = 3 - rot
		}
		switch rot {
		case 0:
			to64(x, y, z, 4)
		case 1:
			to64(z, x, y, 4)
		case 2:
			to64(y, z, x, 4)
		}
	}
	if size == 32 {
		to64(0, c[31], c[30], 3)
	} else {
		to64(0, 0, c[63], 2)
	}
	return out.String()
}

func sum(newHash func() hash.Hash, parts ...[]byte) []byte {
	h := newHash()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// repeatTo is digest repeated to n bytes (the specification's P and S sequences).
func repeatTo(digest []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, digest[:min(len(digest), n-len(out))]...)
	}
	return out
}
