package natssink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// BenchmarkSinkDelivery measures events delivered per second by the real
// publisher (its passes back to back, default batch of 500, positions
// moved per pass) to a local webhook receiver (signature checked, 204) and
// to the local NATS JetStream (each message acknowledged), on each
// backend. b.N events over 100 aggregates are written first, outside the
// timer; the metric is events/s.
func BenchmarkSinkDelivery(b *testing.B) {
	for _, d := range storetest.Backends() {
		for _, sinkName := range []string{"webhook", "nats"} {
			b.Run(string(d)+"/"+sinkName, func(b *testing.B) {
				if sinkName == "nats" && os.Getenv("CAREFLOW_TEST_NATS") == "" {
					natsURL(b)
				}
				db := storetest.Open(b, d)
				ctx := context.Background()
				p := events.NewPublisher(db, events.Options{Node: "bench"})
				switch sinkName {
				case "webhook":
					p.RegisterSource(registerReceiver(b, db, &hookReceiver{seen: map[int64]bool{}}))
				case "nats":
					sink, _, _ := testStream(b, natsURL(b))
					p.Register("nats", sink)
				}
				writeEvents(b, db, b.N)
				b.ResetTimer()
				start := time.Now()
				done := 0
				for done < b.N {
					n, err := p.PublishOnce(ctx)
					if err != nil {
						b.Fatal(err)
					}
					done += n
				}
				b.ReportMetric(float64(done)/time.Since(start).Seconds(), "events/s")
			})
		}
	}
}

// writeEvents stores n events over 100 aggregates, 100 to a transaction.
func writeEvents(b *testing.B, db *store.DB, n int) {
	ctx := context.Background()
	payload := json.RawMessage(`{"journey_id":"00000000-0000-0000-0000-000000000000","status":"active","previous_status":""}`)
	for i := 0; i < n; {
		err := db.Tx(ctx, func(tx store.Tx) error {
			for j := 0; j < 100 && i < n; j, i = j+1, i+1 {
				if _, err := events.Write(ctx, tx, events.Event{AggregateType: "Journey", AggregateID: fmt.Sprintf("j-%d", i%100),
					Kind: "rcm.journey.status_changed", Payload: payload}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
