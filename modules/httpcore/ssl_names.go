package httpcore

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// OpenSSL's names of the TLS 1.2 cipher suites crypto/tls implements, for ssl_ciphers
// and $ssl_cipher. TLS 1.3 suites keep their IANA names (as OpenSSL prints them).
var opensslCiphers = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"ECDHE-ECDSA-AES128-SHA256":     tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-RSA-AES128-SHA256":       tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	"AES128-SHA256":                 tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	"DES-CBC3-SHA":                  tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
	"ECDHE-RSA-DES-CBC3-SHA":        tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
}

var cipherNames = func() map[uint16]string {
	m := map[uint16]string{}
	for n, id := range opensslCiphers {
		m[id] = n
	}
	return m
}()

// cipherName is $ssl_cipher: OpenSSL's name, as nginx shows it.
func cipherName(id uint16) string {
	if n, ok := cipherNames[id]; ok {
		return n
	}
	return tls.CipherSuiteName(id)
}

// cipherKeyword reports whether an OpenSSL cipher-string keyword selects suite n
// (an OpenSSL name). ok is false for a word that is not a keyword spindle knows.
func cipherKeyword(word, n string) (match, ok bool) {
	switch word {
	case "ALL", "DEFAULT", "HIGH", "COMPLEMENTOFDEFAULT":
		return !strings.Contains(n, "DES-CBC3"), true
	case "ECDHE", "EECDH", "kEECDH", "kECDHE", "AECDH":
		return strings.HasPrefix(n, "ECDHE-"), true
	case "ECDSA", "aECDSA":
		return strings.Contains(n, "-ECDSA-"), true
	case "aRSA":
		return !strings.Contains(n, "-ECDSA-"), true
	case "kRSA", "RSA":
		return !strings.HasPrefix(n, "ECDHE-"), true
	case "AESGCM":
		return strings.Contains(n, "GCM"), true
	case "AES":
		return strings.Contains(n, "AES"), true
	case "AES128":
		return strings.Contains(n, "AES128"), true
	case "AES256":
		return strings.Contains(n, "AES256"), true
	case "CHACHA20":
		return strings.Contains(n, "CHACHA20"), true
	case "SHA", "SHA1":
		return strings.HasSuffix(n, "-SHA"), true
	case "SHA256":
		return strings.HasSuffix(n, "SHA256"), true
	case "SHA384":
		return strings.HasSuffix(n, "SHA384"), true
	case "3DES":
		return strings.Contains(n, "DES-CBC3"), true
	// Classes crypto/tls has no suite in.
	case "aNULL", "eNULL", "NULL", "MD5", "RC4", "EXPORT", "EXP", "LOW", "MEDIUM", "DES", "DSS", "aDSS",
		"PSK", "SRP", "CAMELLIA", "SEED", "IDEA", "ADH", "AECDH-NULL", "kDHE", "EDH", "DHE", "aPSK", "kPSK", "ARIA", "CCM", "CBC":
		return false, true
	}
	return false, false
}

// parseCiphers turns an OpenSSL cipher string ("ECDHE-ECDSA-AES128-GCM-SHA256:HIGH:
// !aNULL") into crypto/tls suites, in OpenSSL's way: names and keywords add suites,
// "!" removes them for good, "-" removes them, "+" and "@STRENGTH" only reorder (Go
// chooses the order itself). TLS 1.3 suite names are accepted and ignored: Go always
// offers all three.
func parseCiphers(s string) ([]uint16, error) {
	var order []string
	have := map[string]bool{}
	banned := map[string]bool{}
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		op := byte(0)
		if w[0] == '!' || w[0] == '-' || w[0] == '+' {
			op, w = w[0], w[1:]
		}
		if strings.HasPrefix(w, "@") || strings.HasPrefix(w, "TLS_") {
			continue
		}
		var sel []string
		if _, ok := opensslCiphers[w]; ok {
			sel = []string{w}
		} else {
			// "ECDHE+AESGCM": every part must match.
			parts := strings.Split(w, "+")
			for n := range opensslCiphers {
				all := true
				for _, p := range parts {
					m, ok := cipherKeyword(p, n)
					if !ok {
						return nil, fmt.Errorf("unknown cipher or keyword %q", p)
					}
					all = all && m
				}
				if all {
					sel = append(sel, n)
				}
			}
		}
		for _, n := range sel {
			switch op {
			case '!':
				banned[n] = true
				have[n] = false
			case '-':
				have[n] = false
			case '+':
			default:
				if !banned[n] && !have[n] {
					have[n] = true
					order = append(order, n)
				}
			}
		}
	}
	var ids []uint16
	for _, n := range order {
		if have[n] {
			ids = append(ids, opensslCiphers[n])
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%q selects no TLS 1.2 cipher suite crypto/tls implements", s)
	}
	return ids, nil
}

// defaultCurves are ssl_ecdh_curve's "auto", the default: the groups of nginx 1.22 with
// OpenSSL 3.0, without Go's post-quantum hybrids, which a Go client or a browser would
// otherwise get (X25519MLKEM768: a 1.1 KB key share each way and ML-KEM's
// encapsulation, 60-90 µs more of the worker's CPU per full handshake with Go's client,
// about 10%). crypto/tls orders them itself (X25519 first), after the client's key
// shares: a client that sent one for any of them gets no HelloRetryRequest.
var defaultCurves = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}

// curvePreferences is ssl_ecdh_curve's list, defaultCurves without one.
func curvePreferences(set []tls.CurveID) []tls.CurveID {
	if set == nil {
		return defaultCurves
	}
	return set
}

// parseCurves reads ssl_ecdh_curve: "auto" (defaultCurves) or a colon-separated list of
// OpenSSL or IANA group names.
func parseCurves(s string) ([]tls.CurveID, error) {
	if s == "auto" {
		return defaultCurves, nil
	}
	var out []tls.CurveID
	for _, w := range strings.Split(s, ":") {
		switch w {
		case "X25519", "x25519":
			out = append(out, tls.X25519)
		case "prime256v1", "secp256r1", "P-256":
			out = append(out, tls.CurveP256)
		case "secp384r1", "P-384":
			out = append(out, tls.CurveP384)
		case "secp521r1", "P-521":
			out = append(out, tls.CurveP521)
		case "X25519MLKEM768":
			out = append(out, tls.X25519MLKEM768)
		default:
			return nil, fmt.Errorf("unknown curve %q (auto, X25519, prime256v1, secp384r1, secp521r1, X25519MLKEM768)", w)
		}
	}
	return out, nil
}
