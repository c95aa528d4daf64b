package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Aggregate types of the events careflow writes. A FHIR resource's
// aggregate type is its resource type (RecordAggregate).
const (
	// WorkflowRun is the aggregate of a run's transitions and task events.
	WorkflowRun = "WorkflowRun"
)

// Kinds of record events.
const (
	RecordCreated = "record.created"
	RecordUpdated = "record.updated"
	RecordDeleted = "record.deleted"
)

// MaxPayload bounds an event's payload: ids and codes, not documents.
const MaxPayload = 4096

// Event is one domain event. Payload is a JSON object of opaque ids and
// codes (never PHI).
type Event struct {
	// ID is assigned by Write, increasing in insert order.
	ID            int64  `json:"id"`
	AggregateType string `json:"aggregate_type"`
	AggregateID   string `json:"aggregate_id"`
	// Sequence numbers the aggregate's events from 1, assigned by Write.
	Sequence   int64           `json:"sequence"`
	Kind       string          `json:"kind"`
	OccurredAt time.Time       `json:"occurred_at"`
	Payload    json.RawMessage `json:"payload"`
}

// Record describes a write of a FHIR resource: its type, id, version and
// patient (empty for a record of no patient). kind is RecordCreated,
// RecordUpdated or RecordDeleted. The content never enters the event.
func Record(kind, typ, id string, version int, patientID string, at time.Time) Event {
	p := map[string]any{"type": typ, "id": id, "version": version}
	if patientID != "" {
		p["patient_id"] = patientID
	}
	b, _ := json.Marshal(p) // strings and an int always encode
	return Event{AggregateType: typ, AggregateID: id, Kind: kind, OccurredAt: at, Payload: b}
}

// Write stores ev in the writer's transaction, giving it the aggregate's
// next sequence number. It returns the event as stored.
func Write(ctx context.Context, tx store.Tx, ev Event) (Event, error) {
	if ev.AggregateType == "" || ev.AggregateID == "" || ev.Kind == "" {
		return Event{}, errs.E(errs.Invalid, "an event needs an aggregate type, an aggregate id and a kind")
	}
	if len(ev.Payload) == 0 {
		ev.Payload = json.RawMessage(`{}`)
	}
	var obj map[string]json.RawMessage
	if len(ev.Payload) > MaxPayload || json.Unmarshal(ev.Payload, &obj) != nil {
		return Event{}, errs.E(errs.Invalid, "an event payload is a JSON object of at most %d bytes", MaxPayload)
	}
	if ev.OccurredAt.IsZero() {
		ev.OccurredAt = time.Now()
	}
	ev.OccurredAt = ev.OccurredAt.UTC()
	// The upsert locks the aggregate's row until commit: see doc.go.
	if err := tx.QueryRow(ctx, `INSERT INTO event_streams (aggregate_type, aggregate_id, last_sequence) VALUES ($1, $2, 1)
		ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET last_sequence = event_streams.last_sequence + 1
		RETURNING last_sequence`, ev.AggregateType, ev.AggregateID).Scan(&ev.Sequence); err != nil {
		return Event{}, fmt.Errorf("number %s event: %w", ev.Kind, err)
	}
	if err := tx.QueryRow(ctx, `INSERT INTO events (aggregate_type, aggregate_id, sequence, kind, payload, occurred_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		ev.AggregateType, ev.AggregateID, ev.Sequence, ev.Kind, string(ev.Payload), ev.OccurredAt).Scan(&ev.ID); err != nil {
		return Event{}, fmt.Errorf("write %s event: %w", ev.Kind, err)
	}
	// Every node's publisher passes once this commits.
	if err := store.Notify(ctx, tx, WakeTopic); err != nil {
		return Event{}, fmt.Errorf("write %s event: %w", ev.Kind, err)
	}
	return ev, nil
}

// Since returns up to limit stored events with ids above afterID, in id
// order (for operators and tests; the publisher reads per sink).
func Since(ctx context.Context, q store.Querier, afterID int64, limit int) ([]Event, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	return scan(q.Query(ctx, `SELECT id, aggregate_type, aggregate_id, sequence, kind, payload, occurred_at
		FROM events WHERE id > $1 ORDER BY id LIMIT $2`, afterID, limit))
}

func scan(rows store.Rows, err error) ([]Event, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var (
			ev      Event
			payload string
		)
		if err := rows.Scan(&ev.ID, &ev.AggregateType, &ev.AggregateID, &ev.Sequence, &ev.Kind, &payload, &ev.OccurredAt); err != nil {
			return nil, err
		}
		ev.Payload = json.RawMessage(payload)
		out = append(out, ev)
	}
	return out, rows.Err()
}
