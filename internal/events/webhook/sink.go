package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
)

// Body is what a delivery POSTs (application/json).
type Body struct {
	WebhookID string `json:"webhook_id"`
	// Redrive is true when the events are dead letters sent again.
	Redrive bool           `json:"redrive,omitempty"`
	Events  []events.Event `json:"events"`
}

// secretCache keeps opened secrets by webhook id and version, so a pass
// opens a secret only after it changed.
type secretCache struct {
	mu sync.Mutex
	m  map[string]cachedSecret
}

type cachedSecret struct {
	version int
	secret  []byte
}

// Sinks implements events.SinkSource: every registered webhook, read now,
// as the sink "webhook:<id>" sent the events after its registration.
func (s *Service) Sinks(ctx context.Context) ([]events.NamedSink, error) {
	rows, err := s.db.Reader().Query(ctx, `SELECT id, url, event_types, secret, start_after, version FROM webhooks ORDER BY id`)
	if err != nil {
		return nil, err
	}
	type row struct {
		id, url, types string
		sealed         []byte
		after          int64
		version        int
	}
	var list []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.url, &r.types, &r.sealed, &r.after, &r.version); err != nil {
			rows.Close()
			return nil, err
		}
		list = append(list, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	next := make(map[string]cachedSecret, len(list))
	out := make([]events.NamedSink, 0, len(list))
	for _, r := range list {
		k := &sink{svc: s, id: r.id, url: r.url}
		if err := json.Unmarshal([]byte(r.types), &k.types); err != nil {
			return nil, fmt.Errorf("webhook %s: event types: %w", r.id, err)
		}
		c, ok := s.cache.m[r.id]
		if !ok || c.version != r.version {
			secret, err := s.ring.Open(ctx, secretAAD(r.id), r.sealed)
			if err != nil {
				return nil, fmt.Errorf("webhook %s: open the secret: %w", r.id, err)
			}
			c = cachedSecret{version: r.version, secret: secret}
		}
		next[r.id] = c
		k.secret = c.secret
		out = append(out, events.NamedSink{Name: sinkName(r.id), Sink: k, After: r.after})
	}
	s.cache.m = next
	return out, nil
}

// sink is one webhook as the publisher's sink.
type sink struct {
	svc    *Service
	id     string
	url    string
	types  []string
	secret []byte
}

// wanted keeps the events the webhook subscribes to; the others count as
// delivered to it.
func (k *sink) wanted(evs []events.Event) []events.Event {
	var out []events.Event
	for _, ev := range evs {
		if Matches(k.types, ev.Kind) {
			out = append(out, ev)
		}
	}
	return out
}

// Deliver implements events.Sink: one signed POST of the events the
// webhook subscribes to; any answer but 2xx refuses them all.
func (k *sink) Deliver(ctx context.Context, evs []events.Event) error {
	take := k.wanted(evs)
	if len(take) == 0 {
		return nil
	}
	return k.svc.send(ctx, k.id, k.url, k.secret, take, false)
}

// DeadLetter implements events.DeadLetterSink: the refused events the
// webhook subscribes to become its dead letters, in the publisher's
// transaction. An event dead-lettered before (a re-drive that failed
// again) keeps its row.
func (k *sink) DeadLetter(ctx context.Context, tx store.Tx, evs []events.Event, failures int, cause error) error {
	msg := cause.Error()
	if len(msg) > 300 {
		msg = msg[:300]
	}
	now := k.svc.now().UTC()
	for _, ev := range k.wanted(evs) {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_dead_letters (webhook_id, event_id, aggregate_type, aggregate_id, sequence, kind,
			payload, occurred_at, failures, last_error, dead_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (webhook_id, event_id) DO NOTHING`,
			k.id, ev.ID, ev.AggregateType, ev.AggregateID, ev.Sequence, ev.Kind, string(ev.Payload), ev.OccurredAt, failures, msg, now); err != nil {
			return err
		}
	}
	return nil
}

// send POSTs evs to the webhook, signed with its secret. A 2xx answer
// takes them; the error of any other names the status (never the URL).
func (s *Service) send(ctx context.Context, id, url string, secret []byte, evs []events.Event, redrive bool) error {
	body, err := json.Marshal(Body{WebhookID: id, Redrive: redrive, Events: evs})
	if err != nil {
		return err
	}
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = strconv.FormatInt(ev.ID, 10)
	}
	ts := s.now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: the URL does not make a request", id)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "careflow-webhook/1")
	req.Header.Set(HeaderWebhookID, id)
	req.Header.Set(HeaderEventIDs, strings.Join(ids, ","))
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(secret, ts, body))
	resp, err := s.client.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", id, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: the receiver answered %d", id, resp.StatusCode)
	}
	return nil
}
