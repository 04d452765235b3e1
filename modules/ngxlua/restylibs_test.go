package ngxlua_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
)

// evpBytesToKey is OpenSSL's EVP_BytesToKey with MD5 and one round: the key and IV
// lua-resty-string's resty.aes derives from a passphrase and a salt by default.
func evpBytesToKey(pass, salt string, keyLen, ivLen int) (key, iv []byte) {
	var out, prev []byte
	for len(out) < keyLen+ivLen {
		h := md5.New()
		h.Write(prev)
		h.Write([]byte(pass))
		h.Write([]byte(salt))
		prev = h.Sum(nil)
		out = append(out, prev...)
	}
	return out[:keyLen], out[keyLen : keyLen+ivLen]
}

// aesCBC encrypts with PKCS#7 padding, as EVP_EncryptFinal_ex pads.
func aesCBC(key, iv []byte, plain string) []byte {
	b, _ := aes.NewCipher(key)
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	in := append([]byte(plain), make([]byte, pad)...)
	for i := len(plain); i < len(in); i++ {
		in[i] = byte(pad)
	}
	out := make([]byte, len(in))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, in)
	return out
}

// Debian's lua-nginx-string (lua-resty-string) unmodified: its hashes and AES call
// OpenSSL through ffi.C and its to_hex/atoi call nginx's ngx_hex_dump/ngx_atoi; the
// outputs are checked against Go's crypto.
func TestRestyString(t *testing.T) {
	s := serve(t, "", `
    location "= /string" {
      content_by_lua = <<-LUA
        local str = require "nginx.string"
        local md5 = require("nginx.md5"):new()
        md5:update("hello ")
        md5:update("world")
        ngx.say("md5 ", str.to_hex(md5:final()))
        local sha1 = require("nginx.sha1"):new()
        sha1:update("hello world")
        ngx.say("sha1 ", str.to_hex(sha1:final()))
        local sha256 = require("nginx.sha256"):new()
        sha256:update("hello world")
        ngx.say("sha256 ", str.to_hex(sha256:final()))
        local sha512 = require("nginx.sha512"):new()
        sha512:update("hello world")
        ngx.say("sha512 ", str.to_hex(sha512:final()))
        ngx.say("atoi ", str.atoi("12345"), " ", str.atoi("12a"))

        local aes = require "nginx.aes"
        local a = assert(aes:new("passphrase", "saltsalt"))
        local enc = a:encrypt("the plain text")
        ngx.say("aes ", str.to_hex(enc), " ", a:decrypt(enc))
        local b = assert(aes:new("0123456789abcdef0123456789abcdef", nil, aes.cipher(256, "cbc"),
          { iv = "fedcba9876543210" }))
        local enc2 = b:encrypt("another text")
        ngx.say("aes256 ", str.to_hex(enc2), " ", b:decrypt(enc2))

        local random = require "nginx.random"
        local r1, r2 = random.bytes(16, true), random.bytes(16)
        ngx.say("random ", #r1, " ", #r2, " ", r1 ~= random.bytes(16, true))
        ngx.say("to_hex ", str.to_hex(""), "|", str.to_hex("\0\255"))
      LUA
    }`)
	md5sum := md5.Sum([]byte("hello world"))
	sha1sum := sha1.Sum([]byte("hello world"))
	sha256sum := sha256.Sum256([]byte("hello world"))
	sha512sum := sha512.Sum512([]byte("hello world"))
	key, iv := evpBytesToKey("passphrase", "saltsalt", 16, 16)
	enc := aesCBC(key, iv, "the plain text")
	enc2 := aesCBC([]byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210"), "another text")
	want := fmt.Sprintf("md5 %x\nsha1 %x\nsha256 %x\nsha512 %x\natoi 12345 -1\naes %s the plain text\naes256 %s another text\nrandom 16 16 true\nto_hex |00ff\n",
		md5sum, sha1sum, sha256sum, sha512sum, hex.EncodeToString(enc), hex.EncodeToString(enc2))
	check(t, s.Get("/string"), 200, want)
	noErrors(t, s)
}

// Debian's lua-nginx-cookie (lua-resty-cookie) unmodified: it parses the Cookie
// header (ngx.var.http_cookie) and adds Set-Cookie fields through ngx.header.
func TestRestyCookie(t *testing.T) {
	s := serve(t, "", `
    location "= /cookie" {
      content_by_lua = <<-LUA
        local ck = require "nginx.cookie"
        local cookie = assert(ck:new())
        -- Set-Cookie fields first: output sends the response header.
        assert(cookie:set({ key = "sid", value = "xyz", path = "/", httponly = true, max_age = 60 }))
        assert(cookie:set({ key = "lang", value = "en", domain = "example.com", secure = true }))
        assert(cookie:set({ key = "theme", value = "dark" }))
        local _, err = cookie:set({ key = "nokey" })
        ngx.say("a=", cookie:get("a"), " b=", cookie:get("b"), " none=", tostring(cookie:get("none")))
        local all = cookie:get_all()
        local keys = {}
        for k, v in pairs(all or {}) do keys[#keys + 1] = k .. ":" .. v end
        table.sort(keys)
        ngx.say("all ", table.concat(keys, ","))
        ngx.say("set ", err)
      LUA
    }
    location "= /nocookie" {
      content_by_lua = <<-LUA
        local cookie = require("nginx.cookie"):new()
        ngx.say(select(2, cookie:get("a")))
      LUA
    }`)
	r := s.Get("/cookie", "Cookie: a=1; b=two;  c=3")
	check(t, r, 200, "a=1 b=two none=nil\nall a:1,b:two,c:3\nset missing cookie field \"key\" or \"value\"\n")
	want := []string{"sid=xyz; Max-Age=60; Path=/; HttpOnly", "lang=en; Domain=example.com; Secure", "theme=dark"}
	if got := r.Header.Values("Set-Cookie"); !slices.Equal(got, want) {
		t.Errorf("Set-Cookie %q, want %q", got, want)
	}
	check(t, s.Get("/nocookie"), 200, "no cookie found in the current request\n")
	noErrors(t, s)
}
