package phi

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/careflow/careflow/internal/errs"
)

// MasterKeyEnv is the environment variable that may hold the master key,
// base64-encoded.
const MasterKeyEnv = "CAREFLOW_MASTER_KEY"

// DevMasterKeyFile is the file name of the generated development master key
// inside the data directory.
const DevMasterKeyFile = "master.key"

const masterKeySize = 32

// MasterKey is the root secret. It never encrypts PHI itself: it wraps the
// data-encryption and blind-index keys stored in phi_keys, so rotating a
// data key never needs a new master key and the database alone (a dump, a
// backup) reveals nothing.
//
// Its String, GoString, Format and LogValue redact, like Text.
type MasterKey struct {
	b *[masterKeySize]byte
}

// Derive returns a 32-byte key for one purpose, derived from the master key
// with HKDF-SHA256 (purpose is the info; it must name the use and its
// version, e.g. "careflow/research-pseudonym/v1"). A derived key is as
// stable as the master key (data keys may rotate under it) and is kept
// where the master key is, apart from the data: it is never stored. Keys
// of different purposes are independent.
func (k MasterKey) Derive(purpose string) ([]byte, error) {
	if purpose == "" || k.b == nil {
		return nil, errors.New("phi: a derived key needs a master key and a purpose")
	}
	return hkdf.Key(sha256.New, k.b[:], nil, purpose, 32)
}

// MasterKeySource says where a master key came from.
type MasterKeySource string

const (
	MasterKeyFromFile MasterKeySource = "file"
	MasterKeyFromEnv  MasterKeySource = "env"
	// MasterKeyDev: generated (or found) in the data directory. Anyone who
	// can read the data directory can read the PHI, so the caller must warn
	// at every start.
	MasterKeyDev MasterKeySource = "dev"
)

// ParseMasterKey accepts exactly 32 raw bytes, or those 32 bytes in base64
// (standard or URL alphabet, padded or not) with surrounding white space.
func ParseMasterKey(b []byte) (MasterKey, error) {
	if len(b) == masterKeySize {
		return masterKeyOf(b), nil
	}
	s := string(bytes.TrimSpace(b))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil && len(raw) == masterKeySize {
			return masterKeyOf(raw), nil
		}
	}
	// Never echo the input: it is (most likely) a mistyped secret.
	return MasterKey{}, errs.E(errs.Invalid, "master key must be 32 raw bytes or 32 bytes in base64")
}

func masterKeyOf(raw []byte) MasterKey {
	var k [masterKeySize]byte
	copy(k[:], raw)
	return MasterKey{b: &k}
}

// ReadMasterKeyFile reads a master key file. It refuses a file that group or
// others may read or write: a key anyone on the host can read protects
// nothing, and failing loudly at start is better than a quiet leak.
func ReadMasterKeyFile(path string) (MasterKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return MasterKey{}, errs.Wrap(errs.Invalid, err, "open master key file %s", path)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return MasterKey{}, errs.Wrap(errs.Invalid, err, "stat master key file %s", path)
	}
	if !info.Mode().IsRegular() {
		return MasterKey{}, errs.E(errs.Invalid, "master key file %s is not a regular file", path)
	}
	// Windows has no POSIX modes; its ACLs are the operator's business.
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return MasterKey{}, errs.E(errs.Invalid, "master key file %s has mode %04o; it must not be accessible to group or others (chmod 600)", path, info.Mode().Perm())
	}
	// A key file is 32 bytes or ~45 characters of base64; anything much
	// larger is the wrong file.
	buf, err := io.ReadAll(io.LimitReader(f, 257))
	if err != nil {
		return MasterKey{}, errs.Wrap(errs.Invalid, err, "read master key file %s", path)
	}
	if len(buf) > 256 {
		return MasterKey{}, errs.E(errs.Invalid, "master key file %s is too large to be a key", path)
	}
	k, err := ParseMasterKey(buf)
	clear(buf)
	if err != nil {
		return MasterKey{}, errs.Wrap(errs.Invalid, err, "master key file %s", path)
	}
	return k, nil
}

// LoadOrCreateMasterKey returns the development master key kept in
// <dataDir>/master.key, generating it (mode 0600) on first use. A key from
// here is always development mode: the caller must warn at every start.
// Two processes starting at once both end up with the same key: the file is
// written under a temporary name and linked into place, which fails if the
// other process won.
func LoadOrCreateMasterKey(dataDir string) (MasterKey, error) {
	path := filepath.Join(dataDir, DevMasterKeyFile)
	if _, err := os.Stat(path); err == nil {
		return ReadMasterKeyFile(path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return MasterKey{}, errs.Wrap(errs.Invalid, err, "stat master key file %s", path)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return MasterKey{}, errs.Wrap(errs.Internal, err, "create data directory %s", dataDir)
	}
	var raw [masterKeySize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return MasterKey{}, errs.Wrap(errs.Internal, err, "generate master key")
	}
	tmp, err := os.CreateTemp(dataDir, ".master.key-*")
	if err != nil {
		return MasterKey{}, errs.Wrap(errs.Internal, err, "create master key file in %s", dataDir)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp already uses 0600; Chmod makes it explicit and survives an
	// unusual umask.
	werr := tmp.Chmod(0o600)
	if werr == nil {
		_, werr = tmp.WriteString(base64.StdEncoding.EncodeToString(raw[:]) + "\n")
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return MasterKey{}, errs.Wrap(errs.Internal, werr, "write master key file in %s", dataDir)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return MasterKey{}, errs.Wrap(errs.Internal, err, "install master key file %s", path)
	}
	// Read back whatever is in place: ours, or the one a concurrent start
	// linked first.
	return ReadMasterKeyFile(path)
}

// ResolveMasterKey finds the master key the way `careflow serve` does:
// the --master-key-file flag (file), else the CAREFLOW_MASTER_KEY
// environment variable (base64), else the development key in dataDir.
// getenv is os.Getenv outside tests.
func ResolveMasterKey(file string, getenv func(string) string, dataDir string) (MasterKey, MasterKeySource, error) {
	if file != "" {
		k, err := ReadMasterKeyFile(file)
		return k, MasterKeyFromFile, err
	}
	if v := getenv(MasterKeyEnv); v != "" {
		k, err := ParseMasterKey([]byte(v))
		if err != nil {
			return MasterKey{}, MasterKeyFromEnv, errs.Wrap(errs.Invalid, err, "%s", MasterKeyEnv)
		}
		return k, MasterKeyFromEnv, nil
	}
	if dataDir == "" {
		return MasterKey{}, MasterKeyDev, errs.E(errs.Invalid, "no master key: give --master-key-file, set %s, or give a data directory for a development key", MasterKeyEnv)
	}
	k, err := LoadOrCreateMasterKey(dataDir)
	return k, MasterKeyDev, err
}

func (k MasterKey) valid() bool { return k.b != nil }

const redactedKey = "[master key redacted]"

func (MasterKey) String() string               { return redactedKey }
func (MasterKey) GoString() string             { return redactedKey }
func (MasterKey) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redactedKey)) }
func (MasterKey) LogValue() slog.Value         { return slog.StringValue(redactedKey) }
func (MasterKey) MarshalText() ([]byte, error) { return []byte(redactedKey), nil }

// wrapper encrypts and decrypts stored keys under a key derived from the
// master key. Deriving (HKDF-SHA256, fixed info) instead of using the master
// key directly keeps key wrapping separate from any other use of the master
// key careflow may make later.
type wrapper struct{ aead cipher.AEAD }

const (
	wrapInfo    = "careflow/phi/wrap/v1"
	wrapFormat  = 0x01
	wrapAADTag  = "careflow/phi/dek/v1"
	wrappedSize = 1 + nonceSize + dekSize + tagSize
)

func newWrapper(k MasterKey) (*wrapper, error) {
	if !k.valid() {
		return nil, errs.E(errs.Internal, "phi: no master key")
	}
	wk, err := hkdf.Key(sha256.New, k.b[:], nil, wrapInfo, 32)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "phi: derive wrapping key")
	}
	block, err := aes.NewCipher(wk)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "phi: wrapping key")
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "phi: wrapping key")
	}
	return &wrapper{aead: aead}, nil
}

// wrapAAD binds a wrapped key to its id and purpose, so a row in phi_keys
// cannot be made to claim another id or turn a blind-index key into a data
// key by editing the table.
func wrapAAD(id KeyID, p Purpose) []byte {
	ad := appendLengthPrefixed(nil, wrapAADTag)
	ad = binary.BigEndian.AppendUint32(ad, uint32(id))
	return appendLengthPrefixed(ad, string(p))
}

func (w *wrapper) wrap(id KeyID, p Purpose, material []byte) ([]byte, error) {
	out := make([]byte, 1+nonceSize, wrappedSize)
	out[0] = wrapFormat
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "phi: read nonce")
	}
	return w.aead.Seal(out, out[1:], material, wrapAAD(id, p)), nil
}

func (w *wrapper) unwrap(id KeyID, p Purpose, wrapped []byte) ([]byte, error) {
	if len(wrapped) != wrappedSize || wrapped[0] != wrapFormat {
		return nil, errs.E(errs.Internal, "phi: stored %s is not a wrapped key", id)
	}
	material, err := w.aead.Open(nil, wrapped[1:1+nonceSize], wrapped[1+nonceSize:], wrapAAD(id, p))
	if err != nil {
		// The usual cause: the server was started with another master key
		// than the one that created the key table.
		return nil, errs.Wrap(errs.Internal, err, "phi: cannot unwrap %s: wrong master key, or the key table was altered", id)
	}
	return material, nil
}

// newKeyMaterial returns fresh random key material.
func newKeyMaterial() ([]byte, error) {
	m := make([]byte, dekSize)
	if _, err := rand.Read(m); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "phi: generate key")
	}
	return m, nil
}
