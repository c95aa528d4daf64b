package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/careflow/careflow/internal/errs"
)

// KeyName is the signer name in every checkpoint note.
const KeyName = "careflow-audit"

// DevSigningKeyFile is the generated development signing key's file name in
// the data directory.
const DevSigningKeyFile = "audit-signing.key"

// VerifiersFile is the file in the checkpoint directory that lists the
// verifier keys (one note verifier key per line) whose signatures
// verification accepts. The directory, not the database, is the trust
// anchor: someone who can rewrite the database must not be able to swap
// the key too.
const VerifiersFile = "verifiers"

// Signer signs checkpoints with an Ed25519 key in the sumdb/note format.
// Its String, GoString, Format and LogValue print only the public verifier
// key, so a careless log line cannot leak the private key.
type Signer struct {
	signer note.Signer
	vkey   string
}

// GenerateSigner makes a new random signing key. It returns the signer and
// the private key's text ("PRIVATE+KEY+careflow-audit+..."), which the
// caller must store as a secret.
func GenerateSigner() (*Signer, string, error) {
	skey, _, err := note.GenerateKey(rand.Reader, KeyName)
	if err != nil {
		return nil, "", errs.Wrap(errs.Internal, err, "generate audit signing key")
	}
	s, err := ParseSigner(skey)
	return s, skey, err
}

// ParseSigner reads a signing key in the sumdb/note private key format.
func ParseSigner(skey string) (*Signer, error) {
	skey = strings.TrimSpace(skey)
	s, err := note.NewSigner(skey)
	if err != nil {
		// Never echo the input: it is (most likely) a mistyped secret.
		return nil, errs.E(errs.Invalid, "audit signing key is not a note signing key (PRIVATE+KEY+<name>+<hash>+<key>)")
	}
	// The verifier key is derived, never stored beside the private key, so
	// the two cannot disagree. Layout of the fifth '+'-separated field (base64, which may itself hold '+'): algorithm byte (1,
	// Ed25519) then the 32-byte seed.
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return nil, errs.E(errs.Invalid, "audit signing key is not a note signing key (PRIVATE+KEY+<name>+<hash>+<key>)")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errs.E(errs.Invalid, "audit signing key is not an Ed25519 note key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "audit signing key")
	}
	return &Signer{signer: s, vkey: vkey}, nil
}

// ReadSignerFile reads a signing key file, refusing one that group or others
// may access: a signing key anyone on the host can read lets them forge
// checkpoints.
func ReadSignerFile(path string) (*Signer, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseSigner(string(b))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "audit signing key file %s", path)
	}
	return s, nil
}

func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "open audit signing key file %s", path)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "stat audit signing key file %s", path)
	}
	if !info.Mode().IsRegular() {
		return nil, errs.E(errs.Invalid, "audit signing key file %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, errs.E(errs.Invalid, "audit signing key file %s has mode %04o; it must not be accessible to group or others (chmod 600)", path, info.Mode().Perm())
	}
	if info.Size() > 1024 {
		return nil, errs.E(errs.Invalid, "audit signing key file %s is too large to be a key", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read audit signing key file %s", path)
	}
	return b, nil
}

// LoadOrCreateSigner returns the development signing key kept in
// <dataDir>/audit-signing.key, generating it (mode 0600) on first use. Two
// processes starting at once end up with the same key: the new key is
// written under a temporary name and linked into place, which fails for the
// loser, who then reads the winner's.
func LoadOrCreateSigner(dataDir string) (*Signer, error) {
	path := filepath.Join(dataDir, DevSigningKeyFile)
	if _, err := os.Stat(path); err == nil {
		return ReadSignerFile(path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, errs.Wrap(errs.Invalid, err, "stat audit signing key file %s", path)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "create data directory %s", dataDir)
	}
	_, skey, err := GenerateSigner()
	if err != nil {
		return nil, err
	}
	if err := writeFileOnce(path, []byte(skey+"\n")); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "write audit signing key file %s", path)
	}
	return ReadSignerFile(path)
}

// ResolveSigner finds the signing key the way `careflow serve` does: the key
// file when one is given, else the development key in dataDir. dev reports
// the latter, which the caller should warn about at every start.
func ResolveSigner(keyFile, dataDir string) (s *Signer, dev bool, err error) {
	if keyFile != "" {
		s, err := ReadSignerFile(keyFile)
		return s, false, err
	}
	if dataDir == "" {
		return nil, true, errs.E(errs.Invalid, "no audit signing key: give a key file or a data directory for a development key")
	}
	s, err = LoadOrCreateSigner(dataDir)
	return s, true, err
}

// writeFileOnce writes data to path (mode 0600) unless path exists, in
// which case it leaves the existing file alone and returns nil. The data is
// synced before it appears under its name, so a crash never leaves a
// half-written file there.
func writeFileOnce(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	werr := tmp.Chmod(0o600)
	if werr == nil {
		_, werr = tmp.Write(data)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// VerifierKey is the public verifier key, safe to print and publish
// ("careflow-audit+<hash>+<key>").
func (s *Signer) VerifierKey() string { return s.vkey }

// Verifier returns the note verifier for this key.
func (s *Signer) Verifier() note.Verifier {
	v, err := note.NewVerifier(s.vkey)
	if err != nil {
		panic("audit: derived verifier key does not parse: " + err.Error())
	}
	return v
}

func (s *Signer) String() string               { return "audit signer " + s.vkey }
func (s *Signer) GoString() string             { return s.String() }
func (s *Signer) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(s.String())) }
func (s *Signer) LogValue() slog.Value         { return slog.StringValue(s.String()) }
func (s *Signer) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ParseVerifiers reads verifier keys, one per line; blank lines and lines
// starting with '#' are skipped.
func ParseVerifiers(b []byte) (keys []string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		k := strings.TrimSpace(sc.Text())
		if k == "" || strings.HasPrefix(k, "#") {
			continue
		}
		if _, err := note.NewVerifier(k); err != nil {
			return nil, errs.E(errs.Invalid, "line %d is not a note verifier key", line)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read verifier keys")
	}
	return keys, nil
}

// ReadVerifiers reads <dir>/verifiers.
func ReadVerifiers(dir string) ([]string, error) {
	path := filepath.Join(dir, VerifiersFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read verifier keys %s", path)
	}
	keys, err := ParseVerifiers(b)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "verifier keys %s", path)
	}
	if len(keys) == 0 {
		return nil, errs.E(errs.Invalid, "verifier keys %s lists no key", path)
	}
	return keys, nil
}

// NewVerifiers builds the note verifier set for keys.
func NewVerifiers(keys ...string) (note.Verifiers, error) {
	vs := make([]note.Verifier, 0, len(keys))
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, errs.E(errs.Invalid, "not a note verifier key")
		}
		vs = append(vs, v)
	}
	return note.VerifierList(vs...), nil
}

// ensureVerifier makes sure <dir>/verifiers lists vkey, adding it when it
// does not (a rotated key joins the old ones, which still verify old
// checkpoints).
func ensureVerifier(dir, vkey string) error {
	path := filepath.Join(dir, VerifiersFile)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err == nil {
		keys, perr := ParseVerifiers(b)
		if perr != nil {
			return perr
		}
		if slices.Contains(keys, vkey) {
			return nil
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	line := vkey + "\n"
	if len(b) > 0 && b[len(b)-1] != '\n' {
		line = "\n" + line
	}
	_, werr := f.WriteString(line)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}
