package hcx

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// The exchange log (table hcx_messages) keeps every message sent and
// received. Its payload and error_details columns are sealed with the PHI
// key ring, bound to the table, the column and the row's id; everything
// else is identifiers and codes.
const tableMessages = "hcx_messages"

// The directions of a logged message.
const (
	DirectionIn  = "in"
	DirectionOut = "out"
)

func messageAAD(id, column string) phi.AAD {
	return phi.AAD{Table: tableMessages, Field: column, Record: id}
}

// Register tells the re-encryptor about the exchange log's sealed columns,
// so a key rotation moves them to the new key like the record's.
func Register(reg *phi.Registry) error {
	return reg.Register(phi.EncryptedColumns{
		Table: tableMessages, Key: []phi.KeyColumn{{Name: "id", Kind: phi.KeyText}},
		Columns: []string{"payload", "error_details"},
		AAD: func(key []any, column string) phi.AAD {
			id, _ := key[0].(string)
			return messageAAD(id, column)
		},
	})
}

// Exchange is one logged message, opened.
type Exchange struct {
	ID            string
	Direction     string
	Action        payer.Action
	APICallID     string
	CorrelationID string
	WorkflowID    string
	Sender        string
	Recipient     string
	Status        string
	Timestamp     time.Time // x-hcx-timestamp
	StoredAt      time.Time
	Warnings      []string
	// ErrorCode is the protocol error code of a refused message (an
	// outbound message the gateway refused) or of a response.error message.
	ErrorCode    string
	Payload      []byte
	ErrorDetails json.RawMessage
}

// Log is the exchange log.
type Log struct {
	db   *store.DB
	ring *phi.Ring
}

// NewLog returns the exchange log of db, sealing with ring.
func NewLog(db *store.DB, ring *phi.Ring) *Log { return &Log{db: db, ring: ring} }

// headerColumn is the header's non-PHI fields, as stored plain.
func headerColumn(h Header) string {
	m := map[string]string{
		HeaderSenderCode: h.SenderCode, HeaderRecipientCode: h.RecipientCode,
		HeaderAPICallID: h.APICallID, HeaderCorrelationID: h.CorrelationID,
		HeaderTimestamp: FormatTimestamp(h.Timestamp),
	}
	for k, v := range map[string]string{HeaderWorkflowID: h.WorkflowID, HeaderStatus: h.Status, HeaderDebugFlag: h.DebugFlag} {
		if v != "" {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// insert writes a message in tx unless (direction, sender, api_call_id) is
// already there; it reports whether it wrote, and the id of the row that
// holds the message (the new one or the first).
func (l *Log) insert(ctx context.Context, tx store.Tx, dir string, action payer.Action, h Header, ex *Exchange) (string, bool, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", false, errs.Wrap(errs.Internal, err, "hcx: message id")
	}
	ex.ID = id.String()
	var payload, details any
	if ex.Payload != nil {
		if payload, err = l.ring.Seal(messageAAD(ex.ID, "payload"), ex.Payload); err != nil {
			return "", false, fmt.Errorf("hcx: seal the payload: %w", err)
		}
	}
	if len(h.ErrorDetails) > 0 {
		if details, err = l.ring.Seal(messageAAD(ex.ID, "error_details"), h.ErrorDetails); err != nil {
			return "", false, fmt.Errorf("hcx: seal the error details: %w", err)
		}
	}
	warnings := ex.Warnings
	if warnings == nil {
		warnings = []string{}
	}
	wb, _ := json.Marshal(warnings)
	n, err := tx.Exec(ctx, `INSERT INTO hcx_messages (id, direction, action, api_call_id, correlation_id, workflow_id,
		sender, recipient, status, message_timestamp, stored_at, header, warnings, error_code, payload, error_details)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		ON CONFLICT (direction, sender, api_call_id) DO NOTHING`,
		ex.ID, dir, string(action), h.APICallID, h.CorrelationID, h.WorkflowID, h.SenderCode, h.RecipientCode, h.Status,
		h.Timestamp.UTC(), ex.StoredAt.UTC(), headerColumn(h), string(wb), ex.ErrorCode, payload, details)
	if err != nil {
		return "", false, fmt.Errorf("hcx: log the message: %w", err)
	}
	if n == 1 {
		return ex.ID, true, nil
	}
	var existing string
	if err := tx.QueryRow(ctx, `SELECT id FROM hcx_messages WHERE direction = $1 AND sender = $2 AND api_call_id = $3`,
		dir, h.SenderCode, h.APICallID).Scan(&existing); err != nil {
		return "", false, fmt.Errorf("hcx: find the logged message: %w", err)
	}
	return existing, false, nil
}

// recordOut logs an outbound message before it is sent, once per
// api_call_id: a retried send finds the first attempt's row.
func (l *Log) recordOut(ctx context.Context, action payer.Action, h Header, payload []byte, now time.Time) (string, error) {
	var id string
	err := l.db.Tx(ctx, func(tx store.Tx) error {
		var err error
		id, _, err = l.insert(ctx, tx, DirectionOut, action, h, &Exchange{Payload: payload, StoredAt: now})
		return err
	})
	return id, err
}

// setErrorCode records the protocol's refusal of an outbound message.
func (l *Log) setErrorCode(ctx context.Context, id, code string) error {
	return l.db.Tx(ctx, func(tx store.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE hcx_messages SET error_code = $1 WHERE id = $2`, code, id)
		return err
	})
}

const selectMessages = `SELECT id, direction, action, api_call_id, correlation_id, workflow_id, sender, recipient, status,
	message_timestamp, stored_at, warnings, error_code, payload, error_details FROM hcx_messages `

// MessagesOfWorkflow returns the messages of a journey (x-hcx-workflow_id),
// oldest first, opened.
func (l *Log) MessagesOfWorkflow(ctx context.Context, workflowID string) ([]Exchange, error) {
	if workflowID == "" {
		return nil, errs.E(errs.Invalid, "a workflow id is required").InField("workflow_id")
	}
	return l.query(ctx, selectMessages+`WHERE workflow_id = $1 ORDER BY stored_at, id`, workflowID)
}

// MessagesOfCorrelation returns the messages of one exchange
// (x-hcx-correlation_id), oldest first, opened.
func (l *Log) MessagesOfCorrelation(ctx context.Context, correlationID string) ([]Exchange, error) {
	if correlationID == "" {
		return nil, errs.E(errs.Invalid, "a correlation id is required").InField("correlation_id")
	}
	return l.query(ctx, selectMessages+`WHERE correlation_id = $1 ORDER BY stored_at, id`, correlationID)
}

func (l *Log) query(ctx context.Context, q string, args ...any) ([]Exchange, error) {
	rows, err := l.db.Reader().Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("hcx: read the exchange log: %w", err)
	}
	defer rows.Close()
	var out []Exchange
	for rows.Next() {
		var ex Exchange
		var action, warnings string
		var payload, details []byte
		if err := rows.Scan(&ex.ID, &ex.Direction, &action, &ex.APICallID, &ex.CorrelationID, &ex.WorkflowID, &ex.Sender,
			&ex.Recipient, &ex.Status, &ex.Timestamp, &ex.StoredAt, &warnings, &ex.ErrorCode, &payload, &details); err != nil {
			return nil, fmt.Errorf("hcx: read the exchange log: %w", err)
		}
		ex.Action = payer.Action(action)
		if err := json.Unmarshal([]byte(warnings), &ex.Warnings); err != nil {
			return nil, fmt.Errorf("hcx: message %s: warnings: %w", ex.ID, err)
		}
		if payload != nil {
			if ex.Payload, err = l.ring.Open(ctx, messageAAD(ex.ID, "payload"), payload); err != nil {
				return nil, fmt.Errorf("hcx: message %s: open the payload: %w", ex.ID, err)
			}
		}
		if details != nil {
			d, err := l.ring.Open(ctx, messageAAD(ex.ID, "error_details"), details)
			if err != nil {
				return nil, fmt.Errorf("hcx: message %s: open the error details: %w", ex.ID, err)
			}
			ex.ErrorDetails = d
		}
		out = append(out, ex)
	}
	return out, rows.Err()
}
