package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/careflow/careflow/internal/errs"
)

// Argon2Params are the cost parameters of an argon2id password hash. They are
// written into every encoded hash (PHC string format), so they can be raised
// later: a hash made with weaker parameters still verifies, and is rehashed
// with the current ones at the user's next successful login.
type Argon2Params struct {
	// MemoryKiB is the memory cost in KiB.
	MemoryKiB uint32
	// Time is the number of passes over the memory.
	Time uint32
	// Threads is the degree of parallelism.
	Threads uint8
	// SaltLen and KeyLen are in bytes.
	SaltLen uint32
	KeyLen  uint32
}

// DefaultArgon2Params are production's parameters: OWASP's argon2id minimum
// (19 MiB, two passes, one lane) with a 16-byte salt and a 32-byte hash.
// About 30-50 ms per hash on one core, which bounds a guessing attacker
// while keeping login latency unnoticeable.
func DefaultArgon2Params() Argon2Params {
	return Argon2Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
}

// Password policy limits. The upper bound exists because argon2 reads the
// whole password: a megabyte "password" is a cheap way to burn CPU.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 1024
)

// CheckPasswordPolicy enforces the local password rules: at least
// MinPasswordLen characters, at most MaxPasswordLen bytes, valid UTF-8, not
// the username, and not guessable (password_strength.go: not a common or
// breached password, nor built on one, on repeats, sequences, keyboard
// walks or dates, and not containing the username, any of names — a
// display name, say — or their parts). NIST SP 800-63B: length and a
// blocklist over composition rules. Every path that sets a password calls
// it. The error never repeats the password.
func CheckPasswordPolicy(username, password string, names ...string) error {
	if len(password) > MaxPasswordLen {
		return errs.E(errs.Invalid, "password must be at most %d bytes", MaxPasswordLen).InField("password")
	}
	if !utf8.ValidString(password) {
		return errs.E(errs.Invalid, "password must be valid UTF-8").InField("password")
	}
	if utf8.RuneCountInString(password) < MinPasswordLen {
		return errs.E(errs.Invalid, "password must be at least %d characters", MinPasswordLen).InField("password")
	}
	if strings.EqualFold(strings.TrimSpace(password), strings.TrimSpace(username)) {
		return errs.E(errs.Invalid, "password must not be the username").InField("password")
	}
	return checkGuessable(password, append([]string{username}, names...))
}

// HashPassword returns the PHC-format argon2id hash of password:
// $argon2id$v=19$m=MEM,t=TIME,p=THREADS$SALT$HASH (unpadded standard base64).
// random supplies the salt (crypto/rand.Reader when nil).
func HashPassword(p Argon2Params, password string, random io.Reader) (string, error) {
	if random == nil {
		random = rand.Reader
	}
	if p.SaltLen < 8 || p.KeyLen < 16 || p.Time < 1 || p.Threads < 1 || p.MemoryKiB < 8*uint32(p.Threads) {
		return "", errors.New("argon2id parameters are below the safe minimum")
	}
	salt := make([]byte, p.SaltLen)
	if _, err := io.ReadFull(random, salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return encodePHC(p, salt, key), nil
}

func encodePHC(p Argon2Params, salt, key []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// Bounds on parameters read back from the database, so a corrupted or
// planted hash cannot make verification allocate gigabytes.
const (
	maxArgon2MemoryKiB = 1 << 21 // 2 GiB
	maxArgon2Time      = 64
)

// decodePHC parses an encoded argon2id hash.
func decodePHC(encoded string) (Argon2Params, []byte, []byte, error) {
	var p Argon2Params
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errors.New("unsupported argon2 version")
	}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, nil, nil, errors.New("malformed argon2id parameters")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, nil, nil, errors.New("malformed argon2id parameter value")
		}
		switch k {
		case "m":
			p.MemoryKiB = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return p, nil, nil, errors.New("argon2id parallelism out of range")
			}
			p.Threads = uint8(n)
		default:
			return p, nil, nil, errors.New("unknown argon2id parameter")
		}
	}
	if p.MemoryKiB == 0 || p.MemoryKiB > maxArgon2MemoryKiB || p.Time == 0 || p.Time > maxArgon2Time || p.Threads == 0 {
		return p, nil, nil, errors.New("argon2id parameters out of range")
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return p, nil, nil, errors.New("malformed argon2id salt")
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < 16 {
		return p, nil, nil, errors.New("malformed argon2id hash")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}

// VerifyPassword reports whether password matches the encoded hash, and
// whether the hash should be replaced because it was made with parameters
// weaker than want. The comparison is constant-time.
func VerifyPassword(encoded, password string, want Argon2Params) (ok, rehash bool, err error) {
	p, salt, key, err := decodePHC(encoded)
	if err != nil {
		return false, false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(key)))
	if subtle.ConstantTimeCompare(got, key) != 1 {
		return false, false, nil
	}
	rehash = p.MemoryKiB < want.MemoryKiB || p.Time < want.Time || p.Threads < want.Threads ||
		p.SaltLen < want.SaltLen || p.KeyLen < want.KeyLen
	return true, rehash, nil
}
