package httpcore

import (
	"net/textproto"
	"strings"
)

// Header is an ordered list of HTTP header fields with case-insensitive lookup. It
// holds response headers (and the request headers of subrequests that change them).
type Header struct {
	kv []HeaderField
}

// HeaderField is one header line.
type HeaderField struct {
	Key, Value string
}

// Get returns the first value of key, or "".
func (h *Header) Get(key string) string {
	for i := range h.kv {
		if strings.EqualFold(h.kv[i].Key, key) {
			return h.kv[i].Value
		}
	}
	return ""
}

// Lookup returns the first value of key and whether it is present.
func (h *Header) Lookup(key string) (string, bool) {
	for i := range h.kv {
		if strings.EqualFold(h.kv[i].Key, key) {
			return h.kv[i].Value, true
		}
	}
	return "", false
}

// Values returns every value of key.
func (h *Header) Values(key string) []string {
	var out []string
	for i := range h.kv {
		if strings.EqualFold(h.kv[i].Key, key) {
			out = append(out, h.kv[i].Value)
		}
	}
	return out
}

// Set replaces every value of key with value.
func (h *Header) Set(key, value string) {
	for i := range h.kv {
		if strings.EqualFold(h.kv[i].Key, key) {
			h.kv[i].Value = value
			h.delFrom(key, i+1)
			return
		}
	}
	h.kv = append(h.kv, HeaderField{CanonicalKey(key), value})
}

// Add appends a value of key.
func (h *Header) Add(key, value string) {
	h.kv = append(h.kv, HeaderField{CanonicalKey(key), value})
}

// Del removes every value of key.
func (h *Header) Del(key string) { h.delFrom(key, 0) }

func (h *Header) delFrom(key string, from int) {
	// Most deletions find nothing (a Lua handler's ngx.header sets each delete
	// first): no rewrite of the slice then.
	for from < len(h.kv) && !strings.EqualFold(h.kv[from].Key, key) {
		from++
	}
	if from == len(h.kv) {
		return
	}
	out := h.kv[:from]
	for _, f := range h.kv[from:] {
		if !strings.EqualFold(f.Key, key) {
			out = append(out, f)
		}
	}
	for i := len(out); i < len(h.kv); i++ {
		h.kv[i] = HeaderField{}
	}
	h.kv = out
}

// Fields returns the header lines in order; the slice must not be kept.
func (h *Header) Fields() []HeaderField { return h.kv }

// Len is the number of header lines.
func (h *Header) Len() int { return len(h.kv) }

// Reset empties the header, keeping its storage.
func (h *Header) Reset() {
	for i := range h.kv {
		h.kv[i] = HeaderField{}
	}
	h.kv = h.kv[:0]
}

// Clone returns a copy.
func (h *Header) Clone() Header {
	return Header{kv: append([]HeaderField(nil), h.kv...)}
}

// CanonicalKey returns the header name to write: a name given in lower case is
// capitalised as Content-Type is (with the usual exceptions such as ETag); any other
// spelling is kept as the module wrote it, as nginx keeps it.
func CanonicalKey(k string) string {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'A' <= c && c <= 'Z' || c == '_' || c == ' ' || c >= 0x80 {
			return k
		}
	}
	if s, ok := headerExceptions[k]; ok {
		return s
	}
	return textproto.CanonicalMIMEHeaderKey(k)
}

var headerExceptions = map[string]string{
	"etag": "ETag", "www-authenticate": "WWW-Authenticate", "content-md5": "Content-MD5",
	"te": "TE", "dnt": "DNT", "x-xss-protection": "X-XSS-Protection",
}
