package hcx

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestAKeyRotationResealsTheExchangeLog(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ring := testRing(t, db)
		log := NewLog(db, ring)
		h := callbackHeader(APICallID("rotation/1"))
		h.Status = payer.StatusResponseError
		h.ErrorDetails = json.RawMessage(`{"code":"ERR_DOMAIN_PROCESSING","message":"member ` + patientName + ` not found"}`)
		if _, err := log.recordOut(ctx, payer.ClaimOnSubmit, h, claimBundle, time.Now()); err != nil {
			t.Fatal(err)
		}
		old := ring.Primary()
		next, err := ring.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		reg := &phi.Registry{}
		if err := Register(reg); err != nil {
			t.Fatal(err)
		}
		p, err := phi.NewReencryptor(ring, reg, phi.ReencryptOptions{RetireGrace: time.Millisecond}).RunUntilDone(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p.Resealed != 2 || len(p.Retired) != 1 || p.Retired[0] != old {
			t.Fatalf("re-encryption %+v, want the payload and the error details resealed and %s retired", p, old)
		}
		var payload, details []byte
		if err := db.Reader().QueryRow(ctx, `SELECT payload, error_details FROM hcx_messages`).Scan(&payload, &details); err != nil {
			t.Fatal(err)
		}
		for _, v := range [][]byte{payload, details} {
			if id, err := phi.KeyIDOf(v); err != nil || id != next.ID {
				t.Errorf("a sealed value is on %v (%v), want %s", id, err, next.ID)
			}
		}
		msgs, err := log.MessagesOfCorrelation(ctx, h.CorrelationID)
		if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].Payload, claimBundle) || !bytes.Equal(msgs[0].ErrorDetails, h.ErrorDetails) {
			t.Fatalf("after rotation: %v %+v", err, msgs)
		}
		if bytes.Contains(storetest.Dump(t, db), []byte(patientName)) {
			t.Error("the database dump holds the patient name")
		}
	})
}
