package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made for a test: it signs server and client
// certificates, written as PEM files for spindle's ssl_* directives and usable by Go
// clients.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	Pool *x509.CertPool
	// File is the CA certificate's PEM file (curl --cacert, ssl_client_certificate).
	File string
	dir  string
	t    testing.TB
	seq  int64
}

// NewCA makes a CA whose files go to dir.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"spindle tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, Key: key, Pool: x509.NewCertPool(), dir: dir, t: t, seq: 1}
	ca.Pool.AddCert(cert)
	ca.File = filepath.Join(dir, name+".crt")
	writePEM(t, ca.File, "CERTIFICATE", der)
	return ca
}

// Intermediate makes a CA whose certificate ca signs (written as name.crt), for chains
// longer than one issuer.
func (ca *CA) Intermediate(name string) *CA {
	t := ca.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.seq++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(ca.seq),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"spindle tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	in := &CA{Cert: cert, Key: key, Pool: x509.NewCertPool(), dir: ca.dir, t: t, seq: 1}
	in.Pool.AddCert(cert)
	in.File = filepath.Join(ca.dir, name+".crt")
	writePEM(t, in.File, "CERTIFICATE", der)
	return in
}

// KeyType selects a certificate's key algorithm.
type KeyType int

// Key types.
const (
	ECDSA KeyType = iota
	RSA
)

// Issue makes a certificate for names (DNS names or IP addresses; the first is the
// common name), for a server or (client true) a client, and writes name.crt and
// name.key to the CA's directory. It returns the file paths and the pair for Go.
func (ca *CA) Issue(file string, kt KeyType, client bool, names ...string) (certFile, keyFile string, pair tls.Certificate) {
	t := ca.t
	t.Helper()
	var key crypto.Signer
	var err error
	if kt == RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	ca.seq++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.seq),
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"spindle tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(ca.dir, file+".crt")
	keyFile = filepath.Join(ca.dir, file+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
