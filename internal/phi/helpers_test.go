package phi

import (
	"testing"
	"time"
)

// testKeyset builds an in-memory keyset with data keys 1..n (the last one
// primary, the others active) and a blind-index key n+1, for tests and
// benchmarks of the crypto that need no database.
func testKeyset(tb testing.TB, n int) *keyset {
	tb.Helper()
	var deks []*dek
	for i := 1; i <= n+1; i++ {
		info := KeyInfo{ID: KeyID(i), Purpose: PurposeData, Status: StatusActive, CreatedAt: time.Unix(0, 0)}
		if i == n {
			info.Status = StatusPrimary
		}
		if i == n+1 {
			info.Purpose, info.Status = PurposeBlindIndex, StatusPrimary
		}
		m, err := newKeyMaterial()
		if err != nil {
			tb.Fatal(err)
		}
		d, err := newDEK(info, m)
		if err != nil {
			tb.Fatal(err)
		}
		deks = append(deks, d)
	}
	ks, err := newKeyset(deks)
	if err != nil {
		tb.Fatal(err)
	}
	return ks
}
