package phi

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// Purpose says what a key is for. A key never serves two purposes: the
// blind-index key only ever feeds HMAC, the data keys only ever feed GCM.
type Purpose string

const (
	PurposeData       Purpose = "data"
	PurposeBlindIndex Purpose = "blind_index"
)

// Status is where a key is in its life.
//
//	primary  seals new values (exactly one per purpose)
//	active   no longer seals, still opens rows that have not been re-encrypted
//	retired  a full re-encryption pass found no row on it; kept, never used to seal
type Status string

const (
	StatusPrimary Status = "primary"
	StatusActive  Status = "active"
	StatusRetired Status = "retired"
)

// dekSize is the size of every data-encryption and blind-index key:
// AES-256 and a full-strength HMAC-SHA256 key.
const dekSize = 32

// KeyInfo describes a key without its material; it is safe to log and show.
type KeyInfo struct {
	ID        KeyID
	Purpose   Purpose
	Status    Status
	CreatedAt time.Time
	DemotedAt time.Time // when it stopped being primary; zero while primary
	RetiredAt time.Time // zero until retired
}

// dek is one unwrapped key held in memory.
type dek struct {
	info KeyInfo
	aead cipher.AEAD // PurposeData
	mac  []byte      // PurposeBlindIndex
}

// keyset is an immutable snapshot of the keys a ring holds. A reload builds
// a new keyset and swaps a pointer, so the hot paths (Seal, Open) never take
// a lock and never see a half-loaded ring.
type keyset struct {
	keys    map[KeyID]*dek
	primary *dek // data primary
	blind   *dek // blind-index primary
	maxID   KeyID
}

func newDEK(info KeyInfo, material []byte) (*dek, error) {
	if len(material) != dekSize {
		return nil, errs.E(errs.Internal, "phi: %s has %d bytes of material, want %d", info.ID, len(material), dekSize)
	}
	d := &dek{info: info}
	switch info.Purpose {
	case PurposeData:
		block, err := aes.NewCipher(material)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "phi: %s", info.ID)
		}
		d.aead, err = cipher.NewGCM(block)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "phi: %s", info.ID)
		}
	case PurposeBlindIndex:
		d.mac = append([]byte(nil), material...)
	default:
		return nil, errs.E(errs.Internal, "phi: %s has unknown purpose %q", info.ID, info.Purpose)
	}
	return d, nil
}

func newKeyset(deks []*dek) (*keyset, error) {
	ks := &keyset{keys: make(map[KeyID]*dek, len(deks))}
	for _, d := range deks {
		if _, dup := ks.keys[d.info.ID]; dup {
			return nil, errs.E(errs.Internal, "phi: %s appears twice", d.info.ID)
		}
		ks.keys[d.info.ID] = d
		ks.maxID = max(ks.maxID, d.info.ID)
		if d.info.Status != StatusPrimary {
			continue
		}
		slot := &ks.primary
		if d.info.Purpose == PurposeBlindIndex {
			slot = &ks.blind
		}
		if *slot != nil {
			return nil, errs.E(errs.Internal, "phi: two primary %s keys (%s, %s)", d.info.Purpose, (*slot).info.ID, d.info.ID)
		}
		*slot = d
	}
	if ks.primary == nil || ks.blind == nil {
		return nil, errs.E(errs.Internal, "phi: the key ring has no primary data or blind-index key")
	}
	return ks, nil
}

// seal encrypts plaintext under the primary data key.
func (ks *keyset) seal(aad AAD, plaintext []byte) ([]byte, error) {
	return ks.sealWith(ks.primary, aad, plaintext)
}

func (ks *keyset) sealWith(k *dek, aad AAD, plaintext []byte) ([]byte, error) {
	if err := aad.validate(); err != nil {
		return nil, err
	}
	out := make([]byte, headerSize+nonceSize, overheadV1+len(plaintext))
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[1:headerSize], uint32(k.info.ID))
	// Random 96-bit nonces: safe for well over 2^32 seals per key only if
	// keys are rotated long before that; a hospital's write volume keeps a
	// yearly rotation orders of magnitude below the bound.
	if _, err := rand.Read(out[headerSize:]); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "phi: read nonce")
	}
	ad := aad.appendCanonical(append(make([]byte, 0, 64), out[:headerSize]...))
	return k.aead.Seal(out, out[headerSize:], plaintext, ad), nil
}

// open decrypts ct. ok is false when the key id is not in this keyset (the
// caller may reload and retry); every other failure is an error.
func (ks *keyset) open(aad AAD, ct []byte) (plaintext []byte, ok bool, err error) {
	env, err := parseCiphertext(ct)
	if err != nil {
		return nil, true, err
	}
	k := ks.keys[env.keyID]
	if k == nil {
		return nil, false, nil
	}
	if k.aead == nil {
		// A blind-index key id in a ciphertext header is never produced by
		// seal; treat it as tampering rather than feeding HMAC material to GCM.
		return nil, true, errs.Wrap(errs.Internal, ErrAuth, "phi: ciphertext names %s, which is not a data key", env.keyID)
	}
	if err := aad.validate(); err != nil {
		return nil, true, err
	}
	ad := aad.appendCanonical(append(make([]byte, 0, 64), env.header...))
	pt, err := k.aead.Open(nil, env.nonce, env.sealed, ad)
	if err != nil {
		return nil, true, errs.Wrap(errs.Internal, ErrAuth, "phi: ciphertext under %s failed authentication", env.keyID)
	}
	return pt, true, nil
}

// blindTag is fed to HMAC before the domain so blind indexes can never
// collide with any other HMAC careflow might compute with related keys.
const blindTag = "careflow/phi/blind/v1"

// blindIndex returns the blind index of an already-normalised value in a
// domain. The domain is part of the MAC input, so the same national id in
// "patient.identifier" and "practitioner.identifier" gives unrelated indexes
// and the two columns cannot be joined by anyone reading the database.
func (ks *keyset) blindIndex(domain, normalized string) string {
	m := hmac.New(sha256.New, ks.blind.mac)
	var buf []byte
	buf = appendLengthPrefixed(buf, blindTag)
	buf = appendLengthPrefixed(buf, domain)
	buf = appendLengthPrefixed(buf, normalized)
	m.Write(buf)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
