package phi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/careflow/careflow/internal/errs"
)

var patientName = AAD{Table: "patients", Field: "name", Record: "0192f1d2-7c1e-7a00-8000-000000000001"}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	ks := testKeyset(t, 1)
	for _, pt := range [][]byte{nil, {}, []byte("Mohamed Ali"), []byte("محمد"), bytes.Repeat([]byte{0}, 4096)} {
		ct, err := ks.seal(patientName, pt)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != overheadV1+len(pt) {
			t.Errorf("ciphertext of %d-byte plaintext has %d bytes, want %d", len(pt), len(ct), overheadV1+len(pt))
		}
		if len(pt) > 3 && bytes.Contains(ct, pt) {
			t.Errorf("ciphertext contains the plaintext")
		}
		got, ok, err := ks.open(patientName, ct)
		if err != nil || !ok {
			t.Fatalf("open: ok=%v err=%v", ok, err)
		}
		if !bytes.Equal(got, pt) {
			t.Errorf("open = %q, want %q", got, pt)
		}
		if id, err := KeyIDOf(ct); err != nil || id != 1 {
			t.Errorf("KeyIDOf = %v, %v; want key-1", id, err)
		}
	}
}

func TestSealIsRandomised(t *testing.T) {
	t.Parallel()
	ks := testKeyset(t, 1)
	a, _ := ks.seal(patientName, []byte("same"))
	b, _ := ks.seal(patientName, []byte("same"))
	if bytes.Equal(a, b) {
		t.Fatal("two seals of one value are equal: nonces repeat")
	}
}

func TestOpenRefusesAnotherPlace(t *testing.T) {
	t.Parallel()
	ks := testKeyset(t, 1)
	ct, err := ks.seal(patientName, []byte("Mohamed Ali"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		aad  AAD
	}{
		{"a ciphertext moved to another record", AAD{Table: "patients", Field: "name", Record: "0192f1d2-7c1e-7a00-8000-000000000002"}},
		{"a ciphertext moved to another field", AAD{Table: "patients", Field: "address", Record: patientName.Record}},
		{"a ciphertext moved to another table", AAD{Table: "practitioners", Field: "name", Record: patientName.Record}},
		{"parts shifted between table and field", AAD{Table: "patientsn", Field: "ame", Record: patientName.Record}},
		{"parts shifted between field and record", AAD{Table: "patients", Field: "name0", Record: patientName.Record[1:]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ks.open(tt.aad, ct)
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("open = %v, want ErrAuth", err)
			}
		})
	}
}

func TestOpenRefusesTampering(t *testing.T) {
	t.Parallel()
	ks := testKeyset(t, 2) // keys 1 (active) and 2 (primary)
	ct, err := ks.seal(patientName, []byte("MRN 12345"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		_, ok, err := ks.open(patientName, bad)
		switch {
		case i == 0:
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("flipped format byte: err = %v, want ErrMalformed", err)
			}
		case i < headerSize:
			// The key id now names another key (or an unknown one): either
			// way the value must not open.
			if err == nil && ok {
				t.Errorf("flipped key id byte %d: opened", i)
			}
		default:
			if !errors.Is(err, ErrAuth) {
				t.Errorf("flipped byte %d: err = %v, want ErrAuth", i, err)
			}
		}
	}
	// A valid key id swapped for the other data key must fail too.
	swapped := bytes.Clone(ct)
	binary.BigEndian.PutUint32(swapped[1:], 1)
	if _, _, err := ks.open(patientName, swapped); !errors.Is(err, ErrAuth) {
		t.Errorf("key id changed to another data key: err = %v, want ErrAuth", err)
	}
	// Naming the blind-index key (3) must not feed its material to GCM.
	binary.BigEndian.PutUint32(swapped[1:], 3)
	if _, _, err := ks.open(patientName, swapped); !errors.Is(err, ErrAuth) {
		t.Errorf("key id changed to the blind-index key: err = %v, want ErrAuth", err)
	}
	if _, _, err := ks.open(patientName, ct[:len(ct)-1]); !errors.Is(err, ErrAuth) {
		t.Errorf("truncated by one byte: err = %v, want ErrAuth", err)
	}
}

func TestOpenUnknownKey(t *testing.T) {
	t.Parallel()
	ks := testKeyset(t, 1)
	ct, _ := ks.seal(patientName, []byte("x"))
	binary.BigEndian.PutUint32(ct[1:], 99)
	if _, ok, err := ks.open(patientName, ct); ok || err != nil {
		t.Fatalf("open with key 99: ok=%v err=%v; want not ok, no error (so the ring can reload)", ok, err)
	}
}

func TestParseCiphertextRejectsMalformed(t *testing.T) {
	t.Parallel()
	valid := make([]byte, overheadV1)
	valid[0] = formatV1
	binary.BigEndian.PutUint32(valid[1:], 7)
	zeroKey := bytes.Clone(valid)
	binary.BigEndian.PutUint32(zeroKey[1:], 0)
	otherFormat := bytes.Clone(valid)
	otherFormat[0] = 0x02
	tests := []struct {
		name string
		ct   []byte
		ok   bool
	}{
		{"nil is malformed", nil, false},
		{"one byte short of the minimum is malformed", valid[:overheadV1-1], false},
		{"an unknown format byte is malformed", otherFormat, false},
		{"key id 0 is malformed", zeroKey, false},
		{"the minimum length with key 7 parses", valid, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := KeyIDOf(tt.ct)
			if tt.ok {
				if err != nil || id != 7 {
					t.Fatalf("KeyIDOf = %v, %v; want key-7", id, err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("KeyIDOf = %v, %v; want ErrMalformed", id, err)
			}
		})
	}
}

func TestSealRefusesIncompleteAAD(t *testing.T) {
	t.Parallel()
	ks := testKeyset(t, 1)
	for _, aad := range []AAD{{Field: "f", Record: "r"}, {Table: "t", Record: "r"}, {Table: "t", Field: "f"}} {
		if _, err := ks.seal(aad, []byte("x")); errs.KindOf(err) != errs.Internal {
			t.Errorf("seal with %+v: err = %v, want an internal error", aad, err)
		}
	}
}
