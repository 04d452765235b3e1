package authbasic

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// errScheme is the answer for password hashes no scheme below covers: traditional DES
// crypt (htpasswd -d, 56-bit keys truncated to 8 characters) and yescrypt ($y$), which
// nginx verifies with the system's crypt(3) and no maintained Go library implements.
var errScheme = errors.New("unsupported password scheme (supported: bcrypt $2y$, $apr1$, $1$, $5$, $6$, {SHA}, {SSHA}, {PLAIN})")

// Verify reports whether password matches an htpasswd password field: bcrypt
// ($2y$, $2b$, $2a$, what `htpasswd -B` writes), Apache's MD5 ($apr1$, `htpasswd -m`,
// the default) and FreeBSD's MD5-crypt ($1$) it derives from, SHA-crypt ($5$, $6$),
// {SHA} (`htpasswd -s`), {SSHA} and {PLAIN}: nginx's ngx_crypt schemes and the common
// ones of crypt(3).
func Verify(hash, password string) (bool, error) {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		return err == nil, err
	case strings.HasPrefix(hash, "$apr1$"):
		return equal(md5Crypt(password, hash[len("$apr1$"):], "$apr1$"), hash), nil
	case strings.HasPrefix(hash, "$1$"):
		return equal(md5Crypt(password, hash[len("$1$"):], "$1$"), hash), nil
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return equal(shaCrypt(password, hash[3:], hash[:3]), hash), nil
	case strings.HasPrefix(hash, "{PLAIN}"):
		return equal(password, hash[len("{PLAIN}"):]), nil
	case strings.HasPrefix(hash, "{SHA}"):
		sum := sha1.Sum([]byte(password))
		return equal("{SHA}"+base64.StdEncoding.EncodeToString(sum[:]), hash), nil
	case strings.HasPrefix(hash, "{SSHA}"):
		raw, err := base64.StdEncoding.DecodeString(hash[len("{SSHA}"):])
		if err != nil || len(raw) <= sha1.Size {
			return false, errors.New("malformed {SSHA} password")
		}
		h := sha1.New()
		h.Write([]byte(password))
		h.Write(raw[sha1.Size:])
		return subtle.ConstantTimeCompare(h.Sum(nil), raw[:sha1.Size]) == 1, nil
	}
	return false, errScheme
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

const itoa64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// md5Crypt is Poul-Henning Kamp's MD5-crypt, which Apache's apr1 uses with its own
// magic string (as nginx's ngx_crypt_apr1). rest is the field after the magic:
// "salt$hash"; the salt is at most 8 characters.
func md5Crypt(password, rest, magic string) string {
	salt := rest
	if i := strings.IndexByte(salt, '$'); i >= 0 {
		salt = salt[:i]
	}
	if len(salt) > 8 {
		salt = salt[:8]
	}
	pw := []byte(password)

	alt := md5.New()
	alt.Write(pw)
	alt.Write([]byte(salt))
	alt.Write(pw)
	altSum := alt.Sum(nil)

	h := md5.New()
	h.Write(pw)
	h.Write([]byte(magic))
	h.Write([]byte(salt))
	for n := len(pw); n > 0; n -= 16 {
		h.Write(altSum[:min(n, 16)])
	}
	for i := len(pw); i != 0; i >>= 1 {
		if i&1 != 0 {
			h.Write([]byte{0})
		} else {
			h.Write(pw[:1])
		}
	}
	final := h.Sum(nil)

	// 1000 rounds, to slow down guessing (the algorithm's own figure).
	for i := 0; i < 1000; i++ {
		h := md5.New()
		if i&1 != 0 {
			h.Write(pw)
		} else {
			h.Write(final)
		}
		if i%3 != 0 {
			h.Write([]byte(salt))
		}
		if i%7 != 0 {
			h.Write(pw)
		}
		if i&1 != 0 {
			h.Write(final)
		} else {
			h.Write(pw)
		}
		final = h.Sum(final[:0])
	}

	var out bytes.Buffer
	out.WriteString(magic)
	out.WriteString(salt)
	out.WriteByte('$')
	to64 := func(v uint32, n int) {
		for ; n > 0; n-- {
			out.WriteByte(itoa64[v&0x3f])
			v >>= 6
		}
	}
	f := final
	to64(uint32(f[0])<<16|uint32(f[6])<<8|uint32(f[12]), 4)
	to64(uint32(f[1])<<16|uint32(f[7])<<8|uint32(f[13]), 4)
	to64(uint32(f[2])<<16|uint32(f[8])<<8|uint32(f[14]), 4)
	to64(uint32(f[3])<<16|uint32(f[9])<<8|uint32(f[15]), 4)
	to64(uint32(f[4])<<16|uint32(f[10])<<8|uint32(f[5]), 4)
	to64(uint32(f[11]), 2)
	return out.String()
}
