package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
)

// MaxRedrive is the most dead letters one re-drive sends (one POST).
const MaxRedrive = 500

// DeadLetter is an event a webhook's receiver kept refusing.
type DeadLetter struct {
	// ID is the dead letter's own id (the cursor of the listing).
	ID        int64        `json:"id"`
	Event     events.Event `json:"event"`
	Failures  int          `json:"failures"`
	LastError string       `json:"last_error"`
	DeadAt    time.Time    `json:"dead_at"`
}

// DeadLetterPage is a page of dead letters in the order they died; Next, when
// set, is the after of the next page.
type DeadLetterPage struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
	Next        int64        `json:"next,omitempty"`
}

// Redriven is a re-drive's outcome: how many dead letters the receiver
// took (and were deleted), and how many the webhook still has.
type Redriven struct {
	Redelivered int `json:"redelivered"`
	Remaining   int `json:"remaining"`
}

// DeadLetters lists a webhook's dead letters with ids above after, up to
// limit (1 to 1000; 0 is 100).
func (s *Service) DeadLetters(ctx context.Context, id string, after int64, limit int) (DeadLetterPage, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return DeadLetterPage{}, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	dls, err := s.deadLetters(ctx, s.db.Reader(), id, after, nil, limit+1, "id")
	if err != nil {
		return DeadLetterPage{}, err
	}
	page := DeadLetterPage{DeadLetters: dls}
	if len(dls) > limit {
		page.DeadLetters = dls[:limit]
		page.Next = dls[limit-1].ID
	}
	return page, nil
}

// deadLetters reads a webhook's dead letters: the listing's page after a
// dead letter id in id order, or a re-drive's (only those named, if any)
// in event order, the order the publisher would have sent them in.
func (s *Service) deadLetters(ctx context.Context, q store.Querier, webhookID string, after int64, only []int64, limit int, order string) ([]DeadLetter, error) {
	query := `SELECT id, event_id, aggregate_type, aggregate_id, sequence, kind, payload, occurred_at, failures, last_error, dead_at
		FROM webhook_dead_letters WHERE webhook_id = $1 AND id > $2`
	args := []any{webhookID, after, limit}
	if len(only) > 0 {
		marks := make([]string, len(only))
		for i, v := range only {
			args = append(args, v)
			marks[i] = "$" + strconv.Itoa(len(args))
		}
		query += ` AND id IN (` + strings.Join(marks, ",") + `)`
	}
	rows, err := q.Query(ctx, query+` ORDER BY `+order+` LIMIT $3`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []DeadLetter{}
	for rows.Next() {
		var (
			d       DeadLetter
			payload string
		)
		if err := rows.Scan(&d.ID, &d.Event.ID, &d.Event.AggregateType, &d.Event.AggregateID, &d.Event.Sequence, &d.Event.Kind,
			&payload, &d.Event.OccurredAt, &d.Failures, &d.LastError, &d.DeadAt); err != nil {
			return nil, err
		}
		d.Event.Payload = json.RawMessage(payload)
		out = append(out, d)
	}
	return out, rows.Err()
}

// Redrive sends a webhook's dead letters again (those named by ids, else
// the oldest MaxRedrive), in event order, in one signed POST marked as a
// re-drive, and deletes them once the receiver took them. A receiver that
// refuses leaves them dead-lettered: the error says what it answered.
// A re-drive is sent by the node that asked, beside the publisher's
// deliveries: the receiver tells them apart by event id.
func (s *Service) Redrive(ctx context.Context, id string, ids []int64) (Redriven, error) {
	if len(ids) > MaxRedrive {
		return Redriven{}, errs.E(errs.Invalid, "at most %d dead letters per re-drive", MaxRedrive).InField("ids")
	}
	if _, err := s.Get(ctx, id); err != nil {
		return Redriven{}, err
	}
	var (
		url    string
		sealed []byte
	)
	if err := s.db.Reader().QueryRow(ctx, `SELECT url, secret FROM webhooks WHERE id = $1`, id).Scan(&url, &sealed); errors.Is(err, store.ErrNoRows) {
		return Redriven{}, errNotFound()
	} else if err != nil {
		return Redriven{}, err
	}
	secret, err := s.ring.Open(ctx, secretAAD(id), sealed)
	if err != nil {
		return Redriven{}, err
	}
	dls, err := s.deadLetters(ctx, s.db.Reader(), id, 0, ids, MaxRedrive, "event_id")
	if err != nil {
		return Redriven{}, err
	}
	var out Redriven
	if len(dls) > 0 {
		evs := make([]events.Event, len(dls))
		for i, d := range dls {
			evs[i] = d.Event
		}
		if err := s.send(ctx, id, url, secret, evs, true); err != nil {
			return Redriven{}, errs.E(errs.Unavailable, "the receiver did not take the dead letters; they stay dead-lettered (%v)", err)
		}
		err := s.db.Tx(ctx, func(tx store.Tx) error {
			for _, d := range dls {
				if _, err := tx.Exec(ctx, `DELETE FROM webhook_dead_letters WHERE id = $1`, d.ID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return Redriven{}, err
		}
		out.Redelivered = len(dls)
	}
	err = s.db.Reader().QueryRow(ctx, `SELECT count(*) FROM webhook_dead_letters WHERE webhook_id = $1`, id).Scan(&out.Remaining)
	return out, err
}
