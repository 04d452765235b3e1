package ipc

import (
	"encoding/json"
	"fmt"
)

// Messages of automatic certificates (ACME). The master alone speaks to the ACME
// directory; the workers serve what it obtains and answer the CA's challenges.
// Master → worker: ACMECertificate, ACMEChallenge. Worker → master: ACMEChallengeAck.
const (
	TACMECertificate  Type = 10
	TACMEChallenge    Type = 11
	TACMEChallengeAck Type = 30
)

func init() {
	typeNames[TACMECertificate] = "ACME_CERTIFICATE"
	typeNames[TACMEChallenge] = "ACME_CHALLENGE"
	typeNames[TACMEChallengeAck] = "ACME_CHALLENGE_ACK"
}

// Bounds of the ACME messages. A Let's Encrypt chain is 2 or 3 certificates of under
// 2 KB each, an ECDSA key 138 bytes (PKCS #8); the limits leave room for RSA-4096
// chains and a CA with long intermediate chains, and keep a corrupt message from
// making a worker allocate without end (names are DNS names: 253 bytes at most).
const (
	MaxACMENames        = 100
	MaxACMENameLen      = 253
	MaxACMEChainLen     = 10
	MaxACMECertLen      = 16 << 10
	MaxACMEKeyLen       = 8 << 10
	MaxACMECertificates = 4096 // carried by one Config message
	MaxACMEChallenges   = 1024 // active at once, carried by one Config message
	MaxACMETokenLen     = 256
	MaxACMEKeyAuthLen   = 512
)

// ACMECertificate is a certificate the master obtained (or found stored) for a set
// of server names; the workers' servers whose ssl_acme names are the same set serve
// it from their next handshake on, without a reload.
type ACMECertificate struct {
	Names []string `json:"names"`
	Chain [][]byte `json:"chain"` // DER, leaf first
	Key   []byte   `json:"key"`   // PKCS #8 DER
}

// ACMEChallenge adds (or, with Remove, withdraws) the answer to one challenge of
// the CA. A worker acknowledges an addition with ACMEChallengeAck{ID} once it serves
// the answer: the master asks the CA to validate only when every worker did.
type ACMEChallenge struct {
	ID     uint64 `json:"id"`
	Remove bool   `json:"remove,omitempty"`
	Kind   string `json:"type"` // "http-01" or "tls-alpn-01"
	Domain string `json:"domain"`
	// HTTP-01: the body served at /.well-known/acme-challenge/Token.
	Token   string `json:"token,omitempty"`
	KeyAuth string `json:"key_auth,omitempty"`
	// TLS-ALPN-01: the certificate presented to an acme-tls/1 handshake for Domain.
	Chain [][]byte `json:"chain,omitempty"`
	Key   []byte   `json:"key,omitempty"`
}

// ACMEChallengeAck says a worker serves the answer of ACMEChallenge ID.
type ACMEChallengeAck struct {
	ID uint64 `json:"id"`
}

// Type implementations.
func (ACMECertificate) Type() Type  { return TACMECertificate }
func (ACMEChallenge) Type() Type    { return TACMEChallenge }
func (ACMEChallengeAck) Type() Type { return TACMEChallengeAck }

func checkACMEChain(chain [][]byte, key []byte, need bool) error {
	if need && (len(chain) == 0 || len(key) == 0) {
		return fmt.Errorf("no certificate or no key")
	}
	if len(chain) > MaxACMEChainLen {
		return fmt.Errorf("a chain of %d certificates (at most %d)", len(chain), MaxACMEChainLen)
	}
	for _, c := range chain {
		if len(c) == 0 || len(c) > MaxACMECertLen {
			return fmt.Errorf("a certificate of %d bytes (1 to %d)", len(c), MaxACMECertLen)
		}
	}
	if len(key) > MaxACMEKeyLen {
		return fmt.Errorf("a key of %d bytes (at most %d)", len(key), MaxACMEKeyLen)
	}
	return nil
}

func checkACMEName(n string) error {
	if n == "" || len(n) > MaxACMENameLen {
		return fmt.Errorf("a name of %d bytes (1 to %d)", len(n), MaxACMENameLen)
	}
	return nil
}

func (c ACMECertificate) check() error {
	if len(c.Names) == 0 || len(c.Names) > MaxACMENames {
		return fmt.Errorf("%d names (1 to %d)", len(c.Names), MaxACMENames)
	}
	for _, n := range c.Names {
		if err := checkACMEName(n); err != nil {
			return err
		}
	}
	return checkACMEChain(c.Chain, c.Key, true)
}

func (c ACMEChallenge) check() error {
	if err := checkACMEName(c.Domain); err != nil {
		return err
	}
	switch c.Kind {
	case "http-01":
		if c.Token == "" || len(c.Token) > MaxACMETokenLen || len(c.KeyAuth) > MaxACMEKeyAuthLen {
			return fmt.Errorf("an HTTP-01 token of %d bytes (1 to %d) or key authorization of %d (at most %d)",
				len(c.Token), MaxACMETokenLen, len(c.KeyAuth), MaxACMEKeyAuthLen)
		}
		return nil
	case "tls-alpn-01":
		return checkACMEChain(c.Chain, c.Key, !c.Remove)
	}
	return fmt.Errorf("unknown challenge type %q", c.Kind)
}

// checkACME bounds the ACME state a Config message carries.
func checkACME(certs []ACMECertificate, chals []ACMEChallenge) error {
	if len(certs) > MaxACMECertificates {
		return fmt.Errorf("%d ACME certificates (at most %d)", len(certs), MaxACMECertificates)
	}
	if len(chals) > MaxACMEChallenges {
		return fmt.Errorf("%d ACME challenges (at most %d)", len(chals), MaxACMEChallenges)
	}
	for _, c := range certs {
		if err := c.check(); err != nil {
			return err
		}
	}
	for _, c := range chals {
		if err := c.check(); err != nil {
			return err
		}
	}
	return nil
}

// decodeACME decodes the ACME message types; ok is false for other types.
func decodeACME(f Frame) (m Message, err error, ok bool) {
	switch f.Type {
	case TACMECertificate:
		var v ACMECertificate
		if err = json.Unmarshal(f.Payload, &v); err == nil {
			err = v.check()
		}
		return v, err, true
	case TACMEChallenge:
		var v ACMEChallenge
		if err = json.Unmarshal(f.Payload, &v); err == nil {
			err = v.check()
		}
		return v, err, true
	case TACMEChallengeAck:
		var v ACMEChallengeAck
		err = json.Unmarshal(f.Payload, &v)
		return v, err, true
	}
	return nil, nil, false
}
