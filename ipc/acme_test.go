package ipc

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func acmeFrame(t *testing.T, m Message) Frame {
	t.Helper()
	payload, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := AppendFrame(nil, Frame{Type: m.Type(), Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := ParseFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestACMERoundTrip(t *testing.T) {
	cert := ACMECertificate{Names: []string{"a.test", "www.a.test"}, Chain: [][]byte{{1, 2}, {3}}, Key: []byte{4}}
	chal := ACMEChallenge{ID: 7, Kind: "http-01", Domain: "a.test", Token: "tok", KeyAuth: "tok.thumb"}
	for _, m := range []Message{
		cert, chal,
		ACMEChallenge{ID: 8, Kind: "tls-alpn-01", Domain: "a.test", Chain: [][]byte{{5}}, Key: []byte{6}},
		ACMEChallenge{ID: 8, Remove: true, Kind: "tls-alpn-01", Domain: "a.test"},
		ACMEChallengeAck{ID: 7},
		Config{Generation: 1, Bundle: []byte("x"), ACMECertificates: []ACMECertificate{cert}, ACMEChallenges: []ACMEChallenge{chal}},
	} {
		got, err := Decode(acmeFrame(t, m))
		if err != nil {
			t.Fatalf("%v: %v", m.Type(), err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip: got %#v, want %#v", got, m)
		}
	}
}

// Malformed or oversized ACME messages are refused with the reason.
func TestACMERejects(t *testing.T) {
	long := strings.Repeat("a", MaxACMENameLen+1)
	many := make([]string, MaxACMENames+1)
	for i := range many {
		many[i] = "a.test"
	}
	cases := []struct {
		m    Message
		want string
	}{
		{ACMECertificate{Names: []string{"a.test"}, Key: []byte{1}}, "no certificate"},
		{ACMECertificate{Names: nil, Chain: [][]byte{{1}}, Key: []byte{1}}, "0 names"},
		{ACMECertificate{Names: many, Chain: [][]byte{{1}}, Key: []byte{1}}, "101 names"},
		{ACMECertificate{Names: []string{long}, Chain: [][]byte{{1}}, Key: []byte{1}}, "a name of 254 bytes"},
		{ACMECertificate{Names: []string{"a.test"}, Chain: [][]byte{bytes.Repeat([]byte{1}, MaxACMECertLen+1)}, Key: []byte{1}}, "a certificate of"},
		{ACMECertificate{Names: []string{"a.test"}, Chain: make([][]byte, MaxACMEChainLen+1), Key: []byte{1}}, "a chain of 11"},
		{ACMECertificate{Names: []string{"a.test"}, Chain: [][]byte{{1}}, Key: bytes.Repeat([]byte{1}, MaxACMEKeyLen+1)}, "a key of"},
		{ACMEChallenge{Kind: "dns-01", Domain: "a.test"}, "unknown challenge type"},
		{ACMEChallenge{Kind: "http-01", Domain: "a.test"}, "HTTP-01 token of 0 bytes"},
		{ACMEChallenge{Kind: "http-01", Domain: "a.test", Token: strings.Repeat("t", MaxACMETokenLen+1)}, "HTTP-01 token"},
		{ACMEChallenge{Kind: "tls-alpn-01", Domain: "a.test"}, "no certificate"},
		{Config{ACMEChallenges: make([]ACMEChallenge, MaxACMEChallenges+1)}, "ACME challenges"},
	}
	for _, c := range cases {
		_, err := Decode(acmeFrame(t, c.m))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%#v: err = %v, want %q", c.m, err, c.want)
		}
	}
	f := acmeFrame(t, ACMEChallengeAck{ID: 1})
	f.Payload, _ = json.Marshal("not an object")
	if _, err := Decode(f); err == nil {
		t.Error("a malformed ACME_CHALLENGE_ACK was accepted")
	}
	if TACMEChallenge.String() != "ACME_CHALLENGE" {
		t.Errorf("name %q", TACMEChallenge.String())
	}
}
