package natssink_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/events/natssink"
	"github.com/careflow/careflow/internal/events/webhook"
	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// natsURL is the NATS server the tests use: CAREFLOW_TEST_NATS (then it
// must answer), else the local one at 127.0.0.1:4222 if it answers; the
// test is skipped without either.
func natsURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("CAREFLOW_TEST_NATS"); u != "" {
		return u
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second)
	if err != nil {
		t.Skip("no NATS server at 127.0.0.1:4222 and CAREFLOW_TEST_NATS unset")
	}
	c.Close()
	return "nats://127.0.0.1:4222"
}

// testStream opens a sink on a stream and subject prefix of the test's
// own, deleted when the test ends.
func testStream(t testing.TB, u string) (*natssink.Sink, jetstream.JetStream, string) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "CAREFLOW_TEST_" + strings.ToUpper(hex.EncodeToString(b[:]))
	ctx := context.Background()
	s, err := natssink.Open(ctx, natssink.Config{URL: u, Stream: name, SubjectPrefix: "cftest." + strings.ToLower(name)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = js.DeleteStream(context.Background(), name)
		nc.Close()
	})
	return s, js, name
}

// consume reads the whole stream from its start, in stream order.
func consume(t testing.TB, js jetstream.JetStream, stream string, want int) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < want {
		batch, err := c.Fetch(want-len(out), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if ctx.Err() != nil {
			t.Fatalf("the stream gave %d messages, want %d", len(out), want)
		}
	}
	return out
}

// hookReceiver is a webhook receiver keeping each event once by id.
type hookReceiver struct {
	mu     sync.Mutex
	secret []byte
	seen   map[int64]bool
	got    []events.Event
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if webhook.Verify(h.secret, r.Header, body, time.Now(), time.Minute) != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var b webhook.Body
	if json.Unmarshal(body, &b) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, ev := range b.Events {
		if !h.seen[ev.ID] {
			h.seen[ev.ID] = true
			h.got = append(h.got, ev)
		}
	}
}

// registerReceiver serves recv on a local HTTP server and registers it as
// a webhook of every kind, the secret kept in recv.
func registerReceiver(t testing.TB, db *store.DB, recv *hookReceiver) *webhook.Service {
	t.Helper()
	ctx := context.Background()
	ts := httptest.NewServer(recv)
	t.Cleanup(ts.Close)
	host, _ := url.Parse(ts.URL)
	cl, err := outbound.New(outbound.Config{Hosts: []string{host.Host}})
	if err != nil {
		t.Fatal(err)
	}
	mk, _ := phi.ParseMasterKey(bytes.Repeat([]byte{0x5a}, 32))
	ring, err := phi.OpenRing(ctx, db, mk, phi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hooks := webhook.New(db, ring, cl, webhook.Options{})
	reg, err := hooks.Register(ctx, "admin-1", webhook.Input{URL: ts.URL, EventTypes: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	recv.secret = []byte(reg.Secret)
	recv.mu.Unlock()
	return hooks
}

func (h *hookReceiver) events() []events.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]events.Event(nil), h.got...)
}

// A NATS consumer of the stream gets the same events as a webhook
// receiving every kind, each message's Nats-Msg-Id its event id and its
// subject the event's aggregate type and kind, every aggregate's in
// sequence order; a re-delivery of events already published is dropped by
// JetStream (the stream does not grow).
func TestNATSConsumerGetsTheSameStreamAsAWebhook(t *testing.T) {
	t.Parallel()
	u := natsURL(t)
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		sink, js, stream := testStream(t, u)

		recv := &hookReceiver{seen: map[int64]bool{}}
		hooks := registerReceiver(t, db, recv)

		p := events.NewPublisher(db, events.Options{Node: "n1", Batch: 50})
		p.Register("nats", sink)
		p.RegisterSource(hooks)
		const n = 120
		var written []events.Event
		for i := range n {
			ev := events.Event{AggregateType: "Journey", AggregateID: fmt.Sprintf("j-%d", i%7), Kind: "rcm.journey.status_changed",
				Payload: json.RawMessage(`{"status":"active"}`)}
			if i%3 == 0 {
				ev.AggregateType, ev.Kind = "ClinicalWorkflow", "clinical.step.completed"
			}
			err := db.Tx(ctx, func(tx store.Tx) error {
				w, err := events.Write(ctx, tx, ev)
				written = append(written, w)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if i%40 == 39 {
				if _, err := p.PublishOnce(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		for len(recv.events()) < n {
			if _, err := p.PublishOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
		msgs := consume(t, js, stream, n)
		fromNATS := make([]events.Event, 0, len(msgs))
		last := map[string]int64{}
		for _, m := range msgs {
			var ev events.Event
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			if id := m.Headers().Get(jetstream.MsgIDHeader); id != strconv.FormatInt(ev.ID, 10) {
				t.Fatalf("message of event %d has Nats-Msg-Id %q", ev.ID, id)
			}
			if want := "cftest." + strings.ToLower(stream) + "." + ev.AggregateType + "." + ev.Kind; m.Subject() != want {
				t.Fatalf("subject %s, want %s", m.Subject(), want)
			}
			k := ev.AggregateType + "/" + ev.AggregateID
			if ev.Sequence != last[k]+1 {
				t.Fatalf("%s: sequence %d after %d in the stream", k, ev.Sequence, last[k])
			}
			last[k] = ev.Sequence
			fromNATS = append(fromNATS, ev)
		}
		// The same events, in the same order per aggregate, as the webhook.
		perAgg := func(evs []events.Event) map[string][]int64 {
			m := map[string][]int64{}
			for _, ev := range evs {
				k := ev.AggregateType + "/" + ev.AggregateID
				m[k] = append(m[k], ev.ID)
			}
			return m
		}
		if a, b := fmt.Sprint(perAgg(fromNATS)), fmt.Sprint(perAgg(recv.events())); a != b {
			t.Fatalf("NATS and the webhook differ:\n%s\n%s", a, b)
		}
		if a, b := fmt.Sprint(perAgg(fromNATS)), fmt.Sprint(perAgg(written)); a != b {
			t.Fatalf("NATS has other events than were written:\n%s\n%s", a, b)
		}
		// A re-delivery (a pass cut short after the publish, before its
		// positions moved) is dropped by the stream's dedupe on the id.
		if err := sink.Deliver(ctx, written[:10]); err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil || info.State.Msgs != n {
			t.Fatalf("the stream holds %d messages after a re-delivery (%v), want %d", info.State.Msgs, err, n)
		}
	})
}

// Open creates a missing stream, takes an existing one that carries its
// subjects, and refuses one that does not rather than change it.
func TestOpenEnsuresTheStream(t *testing.T) {
	t.Parallel()
	u := natsURL(t)
	_, js, name := testStream(t, u)
	ctx := context.Background()
	if _, err := js.Stream(ctx, name); err != nil {
		t.Fatalf("the stream was not created: %v", err)
	}
	again, err := natssink.Open(ctx, natssink.Config{URL: u, Stream: name, SubjectPrefix: "cftest." + strings.ToLower(name)})
	if err != nil {
		t.Fatalf("reopening the stream: %v", err)
	}
	again.Close()
	if _, err := natssink.Open(ctx, natssink.Config{URL: u, Stream: name, SubjectPrefix: "elsewhere"}); err == nil ||
		!strings.Contains(err.Error(), "does not take the subjects") {
		t.Fatalf("a stream of other subjects: %v", err)
	}
	if _, err := natssink.Open(ctx, natssink.Config{URL: u, Stream: "bad.name"}); err == nil {
		t.Fatal("a stream name with a dot was taken")
	}
}
