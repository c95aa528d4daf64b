package hcx

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// ParsePrivateKeyPEM reads an RSA private key in PEM (PKCS #8 "PRIVATE
// KEY" or PKCS #1 "RSA PRIVATE KEY"). Several keys may follow one another
// in one file (a rotation: ParsePrivateKeysPEM).
func ParsePrivateKeyPEM(b []byte) (*rsa.PrivateKey, error) {
	keys, err := ParsePrivateKeysPEM(b)
	if err != nil {
		return nil, err
	}
	return keys[0], nil
}

// ParsePrivateKeysPEM reads every RSA private key block of a PEM file, in
// order. Errors never repeat the file's content.
func ParsePrivateKeysPEM(b []byte) ([]*rsa.PrivateKey, error) {
	var keys []*rsa.PrivateKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("hcx: a PKCS #8 private key does not parse")
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, errors.New("hcx: a private key is not RSA")
			}
			keys = append(keys, rk)
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("hcx: a PKCS #1 private key does not parse")
			}
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("hcx: no RSA private key in the PEM data")
	}
	return keys, nil
}

// EncodePrivateKeyPEM writes an RSA private key as a PKCS #8 PEM block.
func EncodePrivateKeyPEM(k *rsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		// An RSA key always marshals; reaching here is a broken key.
		panic("hcx: marshal an RSA private key: " + err.Error())
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// ParseCertificatePEM reads the first certificate of a PEM file. It does
// not check the validity period: RecipientKey and the registry do, at the
// time they use it.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("hcx: no certificate in the PEM data")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, errors.New("hcx: a certificate does not parse")
		}
		return c, nil
	}
}

// EncodeCertificatePEM writes a certificate as a PEM block.
func EncodeCertificatePEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// RecipientKey returns a certificate's RSA public key if the certificate
// is valid at now. A participant's expired certificate is refused: it has
// rotated, and the registry has the new one.
func RecipientKey(c *x509.Certificate, now time.Time) (*rsa.PublicKey, error) {
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return nil, errors.New("hcx: the certificate is not valid now")
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("hcx: the certificate's key is not RSA")
	}
	return pub, nil
}

// The files of a development identity, in its folder.
const (
	DevKeyFile  = "hcx-key.pem"
	DevCertFile = "hcx-cert.pem"
)

// DevIdentity returns the RSA-2048 key and self-signed certificate of a
// development participant, kept in dir (hcx-key.pem, hcx-cert.pem, 0600):
// generated on first use and reused after, so a restarted `careflow serve`
// or `careflow payer-sim` keeps the identity the other side registered.
// code is the participant code, written as the certificate's subject. A
// production participant loads its key and its certificate (issued for its
// registry entry) from files instead.
func DevIdentity(dir, code string, now time.Time) (*rsa.PrivateKey, *x509.Certificate, error) {
	keyPath, certPath := filepath.Join(dir, DevKeyFile), filepath.Join(dir, DevCertFile)
	kb, kerr := os.ReadFile(keyPath)
	cb, cerr := os.ReadFile(certPath)
	if kerr == nil && cerr == nil {
		k, err := ParsePrivateKeyPEM(kb)
		if err != nil {
			return nil, nil, fmt.Errorf("hcx: development key %s: %w", keyPath, err)
		}
		c, err := ParseCertificatePEM(cb)
		if err != nil {
			return nil, nil, fmt.Errorf("hcx: development certificate %s: %w", certPath, err)
		}
		if pub, ok := c.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&k.PublicKey) {
			return nil, nil, fmt.Errorf("hcx: %s does not certify the key in %s", certPath, keyPath)
		}
		// A certificate near its end is renewed for the same key, so the
		// registry entry keeps working.
		if now.Add(24 * time.Hour).Before(c.NotAfter) {
			return k, c, nil
		}
		c, err = selfSign(k, code, now)
		if err != nil {
			return nil, nil, err
		}
		return k, c, writeSecret(certPath, EncodeCertificatePEM(c))
	}
	if !errors.Is(kerr, fs.ErrNotExist) && kerr != nil {
		return nil, nil, fmt.Errorf("hcx: read development key: %w", kerr)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("hcx: development identity folder: %w", err)
	}
	var k *rsa.PrivateKey
	if kerr == nil {
		// The key is there but the certificate is not: certify it again
		// rather than replace the key.
		var err error
		if k, err = ParsePrivateKeyPEM(kb); err != nil {
			return nil, nil, fmt.Errorf("hcx: development key %s: %w", keyPath, err)
		}
	} else {
		var err error
		if k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, nil, fmt.Errorf("hcx: generate a development key: %w", err)
		}
		if err := writeSecret(keyPath, EncodePrivateKeyPEM(k)); err != nil {
			return nil, nil, err
		}
	}
	c, err := selfSign(k, code, now)
	if err != nil {
		return nil, nil, err
	}
	return k, c, writeSecret(certPath, EncodeCertificatePEM(c))
}

func selfSign(k *rsa.PrivateKey, code string, now time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("hcx: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: code},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, fmt.Errorf("hcx: self-sign a development certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// writeSecret writes a file readable by its owner only, atomically (a
// crash leaves the old file or the new one, never half of one).
func writeSecret(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hcx-*")
	if err != nil {
		return fmt.Errorf("hcx: write %s: %w", filepath.Base(path), err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("hcx: write %s: %w", filepath.Base(path), err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("hcx: write %s: %w", filepath.Base(path), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("hcx: write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("hcx: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// Identity is careflow's own participant identity: its code, its private
// keys (newest first: Keys[0] signs tokens and is the one its certificate
// certifies and the registry publishes; the older ones still decrypt what
// was encrypted for them during a rotation), and its certificate.
type Identity struct {
	Code string
	Keys []*rsa.PrivateKey
	Cert *x509.Certificate
}

// Validate checks that the identity can act: a code, a key, and a
// certificate that certifies the newest key.
func (id Identity) Validate() error {
	if id.Code == "" {
		return errors.New("hcx: the participant code is not set")
	}
	if len(id.Keys) == 0 || id.Keys[0] == nil {
		return errors.New("hcx: no private key")
	}
	if id.Cert == nil {
		return errors.New("hcx: no certificate")
	}
	if pub, ok := id.Cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&id.Keys[0].PublicKey) {
		return errors.New("hcx: the certificate does not certify the newest private key")
	}
	return nil
}

// LoadIdentity reads an identity from files: keyFiles newest first (each
// may hold several PEM keys, also newest first) and the certificate of the
// newest key.
func LoadIdentity(code string, keyFiles []string, certFile string) (Identity, error) {
	id := Identity{Code: code}
	for _, f := range keyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return Identity{}, fmt.Errorf("hcx: read key file: %w", err)
		}
		keys, err := ParsePrivateKeysPEM(b)
		if err != nil {
			return Identity{}, fmt.Errorf("hcx: key file %s: %w", filepath.Base(f), err)
		}
		id.Keys = append(id.Keys, keys...)
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		return Identity{}, fmt.Errorf("hcx: read certificate file: %w", err)
	}
	if id.Cert, err = ParseCertificatePEM(b); err != nil {
		return Identity{}, err
	}
	return id, id.Validate()
}

// LoadDevIdentity is DevIdentity as an Identity of one key.
func LoadDevIdentity(dir, code string, now time.Time) (Identity, error) {
	k, c, err := DevIdentity(dir, code, now)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Code: code, Keys: []*rsa.PrivateKey{k}, Cert: c}, nil
}
