package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/careflow/careflow/internal/errs"
)

// DevSigningKeyFile is the generated development JWT signing key's file name
// inside the data directory.
const DevSigningKeyFile = "jwt-signing.pem"

// KeyID is a key's RFC 7638 JWK thumbprint (SHA-256, base64url): derived
// from the key itself, so every node computes the same kid without
// coordination and a kid can never name two different keys.
func KeyID(pub ed25519.PublicKey) string {
	// The thumbprint input is the required members in lexicographic order
	// with no white space.
	canon := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// KeySet is careflow's own token keys: one that signs, and any number that
// still verify (the previous signing key during a rotation, so tokens it
// signed stay valid until they expire).
type KeySet struct {
	signingID string
	signing   ed25519.PrivateKey
	verify    map[string]ed25519.PublicKey
	order     []string
}

// NewKeySet builds a key set that signs with signing and also verifies with
// previous.
func NewKeySet(signing ed25519.PrivateKey, previous ...ed25519.PublicKey) (*KeySet, error) {
	if len(signing) != ed25519.PrivateKeySize {
		return nil, errors.New("signing key is not an Ed25519 private key")
	}
	pub := signing.Public().(ed25519.PublicKey)
	ks := &KeySet{signingID: KeyID(pub), signing: signing, verify: map[string]ed25519.PublicKey{}}
	ks.add(pub)
	for _, p := range previous {
		if len(p) != ed25519.PublicKeySize {
			return nil, errors.New("verification key is not an Ed25519 public key")
		}
		ks.add(p)
	}
	return ks, nil
}

func (ks *KeySet) add(pub ed25519.PublicKey) {
	id := KeyID(pub)
	if _, ok := ks.verify[id]; ok {
		return
	}
	ks.verify[id] = pub
	ks.order = append(ks.order, id)
}

// SigningKeyID is the kid new tokens carry.
func (ks *KeySet) SigningKeyID() string { return ks.signingID }

// Has reports whether kid names one of the set's keys.
func (ks *KeySet) Has(kid string) bool { _, ok := ks.verify[kid]; return ok }

// JWKS returns the public keys as a JSON Web Key Set, signing key first.
func (ks *KeySet) JWKS() []byte {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, id := range ks.order {
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(ks.verify[id]),
			Kid: id, Alg: "EdDSA", Use: "sig"})
	}
	b, _ := json.Marshal(set)
	return b
}

// GenerateSigningKey makes a new Ed25519 key (random from crypto/rand when
// nil) and returns it PEM-encoded (PKCS #8), the format of --jwt-key-file
// and of `openssl genpkey -algorithm ed25519`.
func GenerateSigningKey(random io.Reader) (ed25519.PrivateKey, []byte, error) {
	if random == nil {
		random = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(random)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// readKeyFile reads a small key file, refusing one that group or others may
// access when private is set: a signing key anyone on the host can read lets
// them mint tokens for any role.
func readKeyFile(path string, private bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "open key file %s", path)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "stat key file %s", path)
	}
	if !info.Mode().IsRegular() {
		return nil, errs.E(errs.Invalid, "key file %s is not a regular file", path)
	}
	if private && runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, errs.E(errs.Invalid, "key file %s has mode %04o; it must not be accessible to group or others (chmod 600)", path, info.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read key file %s", path)
	}
	return b, nil
}

// ParseSigningKeyPEM reads the first PKCS #8 Ed25519 private key in a PEM
// file. The error never echoes the input.
func ParseSigningKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM \"PRIVATE KEY\" block holding an Ed25519 key")
		}
		if block.Type != "PRIVATE KEY" {
			continue
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("PRIVATE KEY block is not valid PKCS #8")
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, errors.New("the private key is not Ed25519")
		}
		return priv, nil
	}
}

// LoadSigningKeyFile reads --jwt-key-file.
func LoadSigningKeyFile(path string) (ed25519.PrivateKey, error) {
	b, err := readKeyFile(path, true)
	if err != nil {
		return nil, err
	}
	k, err := ParseSigningKeyPEM(b)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "key file %s", path)
	}
	return k, nil
}

// LoadVerificationKeyFile reads a key that only verifies (the previous
// signing key during a rotation): a PEM "PUBLIC KEY" (PKIX) or a "PRIVATE
// KEY" whose public half is used.
func LoadVerificationKeyFile(path string) (ed25519.PublicKey, error) {
	b, err := readKeyFile(path, false)
	if err != nil {
		return nil, err
	}
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errs.E(errs.Invalid, "key file %s holds no Ed25519 PUBLIC KEY or PRIVATE KEY block", path)
		}
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if pub, ok := k.(ed25519.PublicKey); err == nil && ok {
				return pub, nil
			}
			return nil, errs.E(errs.Invalid, "key file %s: PUBLIC KEY is not Ed25519", path)
		case "PRIVATE KEY":
			priv, err := ParseSigningKeyPEM(pem.EncodeToMemory(block))
			if err != nil {
				return nil, errs.Wrap(errs.Invalid, err, "key file %s", path)
			}
			return priv.Public().(ed25519.PublicKey), nil
		}
	}
}

// LoadOrCreateDevSigningKey returns the development signing key kept in
// <dataDir>/jwt-signing.pem, generating it (mode 0600) on first start.
// Two processes starting together end with the same key: the new key is
// written under a temporary name and hard-linked into place, which fails
// for the loser, who then reads the winner's.
func LoadOrCreateDevSigningKey(dataDir string) (ed25519.PrivateKey, bool, error) {
	path := filepath.Join(dataDir, DevSigningKeyFile)
	// Stat before reading: a failed read followed by a stat could see the
	// file another start linked in between and misreport the read's error.
	if _, err := os.Stat(path); err == nil {
		k, err := LoadSigningKeyFile(path)
		return k, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("stat signing key file %s: %w", path, err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create data folder: %w", err)
	}
	priv, pemBytes, err := GenerateSigningKey(nil)
	if err != nil {
		return nil, false, err
	}
	tmp, err := os.CreateTemp(dataDir, ".jwt-signing-*.tmp")
	if err != nil {
		return nil, false, fmt.Errorf("write signing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("write signing key: %w", err)
	}
	if _, err := tmp.Write(pemBytes); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("write signing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("write signing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, false, fmt.Errorf("write signing key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			k, err := LoadSigningKeyFile(path)
			return k, false, err
		}
		return nil, false, fmt.Errorf("write signing key: %w", err)
	}
	return priv, true, nil
}
