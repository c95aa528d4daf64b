package phi

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/careflow/careflow/internal/errs"
)

// KeyID names one data-encryption key. Ids are allocated in increasing order
// (the newest key has the largest id) and are never reused, so a ring that
// meets an id larger than any it holds knows the key is newer than its last
// load, and an id at or below its largest is simply unknown.
type KeyID uint32

// The ciphertext layout, version 1:
//
//	offset 0      1 byte   format (formatV1)
//	offset 1      4 bytes  key id, big-endian
//	offset 5     12 bytes  random GCM nonce
//	offset 17     n bytes  AES-256-GCM output (encrypted plaintext + 16-byte tag)
//
// The 5-byte header is part of the authenticated data, so changing the
// format byte or the key id makes the ciphertext fail to open. The key id is
// readable without any key, which lets the re-encryptor and operators see
// which key a row is on.
const (
	formatV1    = 0x01
	headerSize  = 1 + 4
	nonceSize   = 12
	tagSize     = 16
	overheadV1  = headerSize + nonceSize + tagSize
	maxKeyValue = 1<<32 - 1
)

// Sentinel causes, wrapped in *errs.Error values. None of them carries the
// plaintext, the AAD or the key.
var (
	// ErrMalformed: the bytes are not a careflow ciphertext.
	ErrMalformed = errors.New("phi: malformed ciphertext")
	// ErrUnknownKey: the ciphertext names a key this ring does not hold,
	// even after reloading the key table.
	ErrUnknownKey = errors.New("phi: ciphertext names an unknown key")
	// ErrAuth: the ciphertext failed authentication: it was altered, or it
	// belongs to another table, field or record than the AAD names.
	ErrAuth = errors.New("phi: ciphertext failed authentication")
)

// envelope is a parsed ciphertext; its slices alias the input.
type envelope struct {
	header []byte
	keyID  KeyID
	nonce  []byte
	sealed []byte // GCM ciphertext with tag
}

// parseCiphertext splits ct without decrypting it. It checks only the
// structure; authenticity is GCM's job.
func parseCiphertext(ct []byte) (envelope, error) {
	if len(ct) < overheadV1 {
		return envelope{}, errs.Wrap(errs.Internal, ErrMalformed, "phi: ciphertext of %d bytes is too short", len(ct))
	}
	if ct[0] != formatV1 {
		return envelope{}, errs.Wrap(errs.Internal, ErrMalformed, "phi: unknown ciphertext format %#x", ct[0])
	}
	id := KeyID(binary.BigEndian.Uint32(ct[1:headerSize]))
	if id == 0 {
		return envelope{}, errs.Wrap(errs.Internal, ErrMalformed, "phi: ciphertext names key 0")
	}
	return envelope{
		header: ct[:headerSize],
		keyID:  id,
		nonce:  ct[headerSize : headerSize+nonceSize],
		sealed: ct[headerSize+nonceSize:],
	}, nil
}

// KeyIDOf returns the id of the key that sealed ct, without decrypting it.
func KeyIDOf(ct []byte) (KeyID, error) {
	env, err := parseCiphertext(ct)
	if err != nil {
		return 0, err
	}
	return env.keyID, nil
}

func (id KeyID) String() string { return fmt.Sprintf("key-%d", uint32(id)) }
