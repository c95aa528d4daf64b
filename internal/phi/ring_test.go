package phi

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func testMasterKey(tb testing.TB, b byte) MasterKey {
	tb.Helper()
	k, err := ParseMasterKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func openTestRing(t *testing.T, db *store.DB) *Ring {
	t.Helper()
	r, err := OpenRing(context.Background(), db, testMasterKey(t, 1), Options{})
	if err != nil {
		t.Fatalf("OpenRing: %v", err)
	}
	return r
}

func TestRingOnDatabase(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := openTestRing(t, db)
		keys := a.Keys()
		if len(keys) != 2 || keys[0].Purpose != PurposeData || keys[1].Purpose != PurposeBlindIndex ||
			keys[0].Status != StatusPrimary || keys[1].Status != StatusPrimary {
			t.Fatalf("a new database got keys %+v, want one primary data and one primary blind-index key", keys)
		}

		t.Run("a second node loads the same keys", func(t *testing.T) {
			b := openTestRing(t, db)
			ct, err := a.Seal(patientName, []byte("Mohamed Ali"))
			if err != nil {
				t.Fatal(err)
			}
			pt, err := b.Open(ctx, patientName, ct)
			if err != nil || string(pt) != "Mohamed Ali" {
				t.Fatalf("other node Open = %q, %v", pt, err)
			}
			ia, _ := a.BlindIndex("patient.name", "Mohamed")
			ib, _ := b.BlindIndex("patient.name", " MOHAMED ")
			if ia != ib || ia == "" {
				t.Fatalf("blind indexes differ between nodes: %q vs %q", ia, ib)
			}
		})

		t.Run("another master key cannot load the ring", func(t *testing.T) {
			_, err := OpenRing(ctx, db, testMasterKey(t, 2), Options{})
			if err == nil {
				t.Fatal("OpenRing with the wrong master key succeeded")
			}
		})

		t.Run("a node that missed a rotation reloads on the new key id", func(t *testing.T) {
			stale := openTestRing(t, db)
			before := stale.Primary()
			info, err := a.Rotate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.ID <= before || a.Primary() != info.ID {
				t.Fatalf("rotate made %v, ring primary %v (was %v)", info.ID, a.Primary(), before)
			}
			ct, _ := a.Seal(patientName, []byte("Amina"))
			if id, _ := KeyIDOf(ct); id != info.ID {
				t.Fatalf("sealed with %v after rotation, want %v", id, info.ID)
			}
			if stale.Primary() != before {
				t.Fatal("the stale ring changed without reloading")
			}
			pt, err := stale.Open(ctx, patientName, ct)
			if err != nil || string(pt) != "Amina" {
				t.Fatalf("stale node Open = %q, %v", pt, err)
			}
			if stale.Primary() != info.ID {
				t.Errorf("stale ring did not pick up the new primary")
			}
			// Old ciphertexts still open.
			old := stale.Keys()
			if old[0].Status != StatusActive || old[0].DemotedAt.IsZero() {
				t.Errorf("old key after rotation: %+v, want active with a demotion time", old[0])
			}
		})

		t.Run("a key id that does not exist is unknown", func(t *testing.T) {
			ct, _ := a.Seal(patientName, []byte("x"))
			ct[1], ct[2], ct[3], ct[4] = 0, 0, 0x7f, 0
			for range 3 { // the second and third hit the miss cache
				_, err := a.Open(ctx, patientName, ct)
				if !errors.Is(err, ErrUnknownKey) {
					t.Fatalf("Open = %v, want ErrUnknownKey", err)
				}
			}
		})

		t.Run("blind indexes separate domains and refuse empty values", func(t *testing.T) {
			x, _ := a.IdentifierIndex("patient.identifier", "MRN-123")
			y, _ := a.IdentifierIndex("practitioner.identifier", "MRN-123")
			z, _ := a.IdentifierIndex("patient.identifier", "mrn 123")
			if x == y {
				t.Error("equal values in different domains have equal indexes")
			}
			if x != z {
				t.Error("identifier index does not normalise")
			}
			if _, err := a.BlindIndex("patient.name", " ... "); !errors.Is(err, ErrEmptyValue) || errs.KindOf(err) != errs.Invalid {
				t.Errorf("empty value: %v", err)
			}
			if _, err := a.BlindIndex("", "x"); err == nil {
				t.Error("no domain accepted")
			}
			w, _ := a.NamePrefixIndexes("patient.name", "Mohamed Ali")
			q, _ := a.NameQueryIndexes("patient.name", "moh")
			if len(w) != 6 || len(q) != 1 || w[0] != q[0] {
				t.Errorf("name query %q not among prefix indexes %q", q, w)
			}
			// A blind index survives a data-key rotation.
			before, _ := a.BlindIndex("patient.name", "Mohamed")
			if _, err := a.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			after, _ := a.BlindIndex("patient.name", "Mohamed")
			if before != after {
				t.Error("rotating the data key changed blind indexes")
			}
		})
	})
}

func TestOpenRingConcurrentBootstrap(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		rings := make([]*Ring, 6)
		var wg sync.WaitGroup
		for i := range rings {
			wg.Go(func() {
				r, err := OpenRing(context.Background(), db, testMasterKey(t, 1), Options{})
				if err != nil {
					t.Error(err)
					return
				}
				rings[i] = r
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for _, r := range rings[1:] {
			if r.Primary() != rings[0].Primary() || len(r.Keys()) != 2 {
				t.Fatalf("nodes disagree: %v vs %v", r.Keys(), rings[0].Keys())
			}
		}
	})
}

func TestConcurrentRotationsConflict(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		rings := []*Ring{openTestRing(t, db), openTestRing(t, db), openTestRing(t, db)}
		var wg sync.WaitGroup
		errsOut := make([]error, len(rings))
		for i, r := range rings {
			wg.Go(func() { _, errsOut[i] = r.Rotate(context.Background()) })
		}
		wg.Wait()
		for _, err := range errsOut {
			if err != nil && errs.KindOf(err) != errs.Conflict {
				t.Errorf("rotation failed with %v, want success or conflict", err)
			}
		}
		if err := rings[0].Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		primaries := 0
		for _, k := range rings[0].Keys() {
			if k.Purpose == PurposeData && k.Status == StatusPrimary {
				primaries++
			}
		}
		if primaries != 1 {
			t.Fatalf("%d primary data keys after concurrent rotations", primaries)
		}
	})
}
