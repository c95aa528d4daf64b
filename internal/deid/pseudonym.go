package deid

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"io"

	"github.com/careflow/careflow/internal/errs"
)

// KeySize is the length of a Pseudonymizer's secret key in bytes.
const KeySize = 32

// pseudonymBytes is how much of the MAC a key keeps: 128 bits. Among ten
// million patients the chance that two share a key is about n²/2^129, below
// 10^-24; an attacker without the key can do no better than guess.
const pseudonymBytes = 16

// pseudonymLabel opens every MAC this package computes, so the same secret
// used elsewhere (say, as a blind-index key) never yields these values.
const pseudonymLabel = "careflow.deid.v1/pseudonym"

// base32 without padding and in lower case: 26 characters for 16 bytes,
// safe in file names, URLs and spreadsheets, and not mistaken for a number.
var pseudonymEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// PatientKeyLen is the length of a PatientKey: "p_" and 26 characters.
const PatientKeyLen = 2 + 26

// A Pseudonymizer turns ids into stable pseudonymous keys:
// HMAC-SHA256(subkey, kind ‖ id) cut to 128 bits, where the subkey is
// HMAC-SHA256(key, label ‖ purpose). The same key, purpose, kind and id give
// the same value on every node and every run; without the key the value
// says nothing about the id, and no one can tell whether two exports made
// for different purposes hold the same patient. It is safe for concurrent
// use.
type Pseudonymizer struct {
	subkey [sha256.Size]byte
}

// NewPseudonymizer makes a Pseudonymizer from a 32-byte secret and the
// purpose its keys serve (for example "research-export/2025-cohort-a"): a
// new purpose gives new, unlinkable keys for the same patients. The key is
// the caller's to keep secret and stable; losing it loses the link to
// earlier exports, which is the point of rotating it.
func NewPseudonymizer(key []byte, purpose string) (*Pseudonymizer, error) {
	if len(key) != KeySize {
		return nil, errs.E(errs.Invalid, "the pseudonym key must be %d bytes", KeySize)
	}
	zero := true
	for _, b := range key {
		zero = zero && b == 0
	}
	if zero {
		// An all-zero key is a missing configuration, not a secret.
		return nil, errs.E(errs.Invalid, "the pseudonym key is all zeros")
	}
	m := hmac.New(sha256.New, key)
	writeField(m, pseudonymLabel)
	writeField(m, purpose)
	p := &Pseudonymizer{}
	m.Sum(p.subkey[:0])
	return p, nil
}

// PatientKey returns the pseudonymous key of a patient id: "p_" followed by
// 26 base32 characters.
func (p *Pseudonymizer) PatientKey(patientID string) string {
	return p.Key("p", patientID)
}

// Key returns the pseudonymous key of an id of some kind ("p" for patients;
// "e" for encounters, say): kind, "_", 26 base32 characters. Ids of
// different kinds give unrelated keys even when the ids are equal.
func (p *Pseudonymizer) Key(kind, id string) string {
	m := hmac.New(sha256.New, p.subkey[:])
	writeField(m, kind)
	writeField(m, id)
	var sum [sha256.Size]byte
	return kind + "_" + pseudonymEncoding.EncodeToString(m.Sum(sum[:0])[:pseudonymBytes])
}

// writeField writes s with its length first, so that no two different
// sequences of fields are the same bytes ("ab","c" and "a","bc" differ).
func writeField(w io.Writer, s string) {
	var n [binary.MaxVarintLen64]byte
	w.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	w.Write([]byte(s))
}
