package deid

import (
	"bytes"
	"errors"
	"regexp"
	"testing"

	"github.com/careflow/careflow/internal/errs"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func newTestPseudonymizer(t testing.TB, key []byte, purpose string) *Pseudonymizer {
	t.Helper()
	p, err := NewPseudonymizer(key, purpose)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var patientKeyShape = regexp.MustCompile(`^p_[a-z2-7]{26}$`)

func TestPseudonymizer(t *testing.T) {
	t.Parallel()
	p := newTestPseudonymizer(t, testKey(1), "research")
	k := p.PatientKey("patient-123")
	if !patientKeyShape.MatchString(k) || len(k) != PatientKeyLen {
		t.Fatalf("PatientKey = %q, not p_ and 26 base32 characters", k)
	}
	tests := []struct {
		name  string
		other string
		same  bool
	}{
		{"the same id gives the same key on every call", p.PatientKey("patient-123"), true},
		{"a new Pseudonymizer with the same key and purpose agrees", newTestPseudonymizer(t, testKey(1), "research").PatientKey("patient-123"), true},
		{"another id gives another key", p.PatientKey("patient-124"), false},
		{"another secret gives another key", newTestPseudonymizer(t, testKey(2), "research").PatientKey("patient-123"), false},
		{"another purpose gives another key", newTestPseudonymizer(t, testKey(1), "billing-analytics").PatientKey("patient-123"), false},
		{"another kind of id gives another key", p.Key("e", "patient-123")[2:], false},
		{"purpose and id do not run into each other", newTestPseudonymizer(t, testKey(1), "researchp").PatientKey("atient-123"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := tt.other
			if len(other) == 26 {
				other = "p_" + other
			}
			if (other == k) != tt.same {
				t.Errorf("key %q vs %q: same=%v, want %v", k, other, other == k, tt.same)
			}
		})
	}
}

func TestPseudonymizerRefusesBadKeys(t *testing.T) {
	t.Parallel()
	for _, key := range [][]byte{nil, testKey(1)[:31], append(testKey(1), 1), make([]byte, KeySize)} {
		_, err := NewPseudonymizer(key, "x")
		var e *errs.Error
		if !errors.As(err, &e) || e.Kind != errs.Invalid {
			t.Errorf("key of %d bytes: err = %v, want an errs.Invalid", len(key), err)
		}
	}
}

func TestPseudonymsDoNotCollide(t *testing.T) {
	t.Parallel()
	p := newTestPseudonymizer(t, testKey(7), "research")
	seen := map[string]bool{}
	for i := range 100000 {
		k := p.PatientKey(string(rune('a'+i%26)) + itoa(i))
		if seen[k] {
			t.Fatalf("collision at %d", i)
		}
		seen[k] = true
	}
}
