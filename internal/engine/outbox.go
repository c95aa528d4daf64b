package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/careflow/careflow/internal/store"
)

// OutboxEvent is a domain event written in the transaction of the change it
// describes. internal/events delivers them; the payload holds ids, names and
// states only, never PHI.
type OutboxEvent struct {
	ID          int64           `json:"id"`
	Type        string          `json:"type"`
	RunID       string          `json:"run_id,omitempty"`
	Payload     json.RawMessage `json:"payload"`
	CreatedAt   time.Time       `json:"created_at"`
	DeliveredAt *time.Time      `json:"delivered_at,omitempty"`
}

func writeOutbox(ctx context.Context, tx store.Tx, eventType, runID string, payload map[string]any, now time.Time) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", eventType, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox_events (event_type, run_id, payload, created_at) VALUES ($1, $2, $3, $4)`,
		eventType, nullable(runID), string(b), now); err != nil {
		return fmt.Errorf("write %s event: %w", eventType, err)
	}
	return nil
}

// UndeliveredEvents returns up to limit undelivered outbox events with ids
// above afterID, in id order. On PostgreSQL ids are assigned at insert, not
// at commit, so a publisher that keeps a cursor must re-read from the
// oldest undelivered id rather than from the newest it has seen.
func UndeliveredEvents(ctx context.Context, q store.Querier, afterID int64, limit int) ([]OutboxEvent, error) {
	rows, err := q.Query(ctx, `SELECT id, event_type, run_id, payload, created_at FROM outbox_events
		WHERE delivered_at IS NULL AND id > $1 ORDER BY id LIMIT $2`, afterID, pageLimit(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OutboxEvent
	for rows.Next() {
		var (
			ev      OutboxEvent
			runID   *string
			payload string
		)
		if err := rows.Scan(&ev.ID, &ev.Type, &runID, &payload, &ev.CreatedAt); err != nil {
			return nil, err
		}
		if runID != nil {
			ev.RunID = *runID
		}
		ev.Payload = json.RawMessage(payload)
		out = append(out, ev)
	}
	return out, rows.Err()
}

// MarkEventsDelivered records delivery of outbox events.
func MarkEventsDelivered(ctx context.Context, tx store.Tx, at time.Time, ids ...int64) error {
	for _, id := range ids {
		if _, err := tx.Exec(ctx, `UPDATE outbox_events SET delivered_at = $1 WHERE id = $2 AND delivered_at IS NULL`, at, id); err != nil {
			return err
		}
	}
	return nil
}
