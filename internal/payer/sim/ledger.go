package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Ledger is the simulator's record of what it received and decided: every
// message accepted (by api_call_id, with its identical re-sends counted)
// and every claim and pre-authorization (by its business identity, the
// Claim.identifier value and the original it appeals). Tests ask it
// whether a claim arrived twice and how many were paid, partially paid or
// denied.
type Ledger struct {
	db *store.DB
}

// MessageRecord is one accepted message.
type MessageRecord struct {
	APICallID     string    `json:"api_call_id"`
	Sender        string    `json:"sender"`
	Recipient     string    `json:"recipient"`
	Action        string    `json:"action"`
	CorrelationID string    `json:"correlation_id"`
	WorkflowID    string    `json:"workflow_id,omitempty"`
	ReceivedAt    time.Time `json:"received_at"`
	// Resends counts identical re-sends answered 202 and not processed.
	Resends int `json:"resends"`
}

// ClaimRecord is one claim or pre-authorization the payer received.
type ClaimRecord struct {
	ID       string `json:"id"`
	Payer    string `json:"payer"`
	Provider string `json:"provider"`
	// Use is "claim" or "preauthorization".
	Use        string `json:"use"`
	Identifier string `json:"identifier"`
	// Related is the identifier of the claim this one appeals or
	// resubmits; empty for a first submission.
	Related       string `json:"related,omitempty"`
	APICallID     string `json:"api_call_id"`
	CorrelationID string `json:"correlation_id"`
	WorkflowID    string `json:"workflow_id,omitempty"`
	// State is awaiting_information, adjudicated or paid.
	State string `json:"state"`
	// Outcome is approved, partial, denied or refused (a pre-authorization
	// refused); empty while awaiting information.
	Outcome       string     `json:"outcome,omitempty"`
	DenialCode    string     `json:"denial_code,omitempty"`
	Currency      string     `json:"currency"`
	Submitted     string     `json:"submitted"`
	Benefit       string     `json:"benefit"`
	PreAuthRef    string     `json:"preauth_ref,omitempty"`
	ReceivedAt    time.Time  `json:"received_at"`
	AdjudicatedAt *time.Time `json:"adjudicated_at,omitempty"`
	PaidAt        *time.Time `json:"paid_at,omitempty"`
}

// Claim states and outcomes.
const (
	StateAwaitingInformation = "awaiting_information"
	StateAdjudicated         = "adjudicated"
	StatePaid                = "paid"

	OutcomeApproved = "approved"
	OutcomePartial  = "partial"
	OutcomeDenied   = "denied"
	OutcomeRefused  = "refused"
)

// ClaimQuery filters Claims; empty fields match everything.
type ClaimQuery struct {
	Identifier string
	Payer      string
	Use        string
	Outcome    string
}

// Summary is the ledger at a glance.
type Summary struct {
	Messages int `json:"messages"`
	Resends  int `json:"resends"`
	// Claims counts claims (use claim) by outcome ("" while awaiting
	// information); Preauths likewise.
	Claims   map[string]int `json:"claims"`
	Preauths map[string]int `json:"preauths"`
	// ProcessedTwice lists claim identifiers adjudicated more than once as
	// first submissions (without Claim.related): a client that submitted
	// one claim twice. It should be empty.
	ProcessedTwice []string `json:"processed_twice"`
}

// Messages lists the accepted messages, oldest first.
func (l *Ledger) Messages(ctx context.Context) ([]MessageRecord, error) {
	rows, err := l.db.Reader().Query(ctx, `SELECT api_call_id, sender, recipient, action, correlation_id, workflow_id, received_at, resends
		FROM sim_messages ORDER BY received_at, api_call_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MessageRecord
	for rows.Next() {
		var m MessageRecord
		if err := rows.Scan(&m.APICallID, &m.Sender, &m.Recipient, &m.Action, &m.CorrelationID, &m.WorkflowID, &m.ReceivedAt, &m.Resends); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Claims lists the claims and pre-authorizations matching q, oldest first.
func (l *Ledger) Claims(ctx context.Context, q ClaimQuery) ([]ClaimRecord, error) {
	rows, err := l.db.Reader().Query(ctx, `SELECT id, payer, provider, claim_use, identifier, related, api_call_id, correlation_id,
		workflow_id, state, outcome, denial_code, currency, submitted, benefit, preauth_ref, received_at, adjudicated_at, paid_at
		FROM sim_claims
		WHERE ($1 = '' OR identifier = $1) AND ($2 = '' OR payer = $2) AND ($3 = '' OR claim_use = $3) AND ($4 = '' OR outcome = $4)
		ORDER BY received_at, id`, q.Identifier, q.Payer, q.Use, q.Outcome)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ClaimRecord
	for rows.Next() {
		var c ClaimRecord
		var submitted, benefit int64
		if err := rows.Scan(&c.ID, &c.Payer, &c.Provider, &c.Use, &c.Identifier, &c.Related, &c.APICallID, &c.CorrelationID,
			&c.WorkflowID, &c.State, &c.Outcome, &c.DenialCode, &c.Currency, &submitted, &benefit, &c.PreAuthRef,
			&c.ReceivedAt, &c.AdjudicatedAt, &c.PaidAt); err != nil {
			return nil, err
		}
		c.Submitted, c.Benefit = Amount(submitted).String(), Amount(benefit).String()
		out = append(out, c)
	}
	return out, rows.Err()
}

// Summary counts messages, re-sends and claims by outcome, and lists the
// claims processed twice.
func (l *Ledger) Summary(ctx context.Context) (Summary, error) {
	s := Summary{Claims: map[string]int{}, Preauths: map[string]int{}, ProcessedTwice: []string{}}
	r := l.db.Reader()
	if err := r.QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(resends), 0) FROM sim_messages`).Scan(&s.Messages, &s.Resends); err != nil {
		return s, err
	}
	rows, err := r.Query(ctx, `SELECT claim_use, outcome, COUNT(*) FROM sim_claims GROUP BY claim_use, outcome`)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var use, outcome string
		var n int
		if err := rows.Scan(&use, &outcome, &n); err != nil {
			rows.Close()
			return s, err
		}
		if use == useClaim {
			s.Claims[outcome] = n
		} else {
			s.Preauths[outcome] = n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, err
	}
	rows, err = r.Query(ctx, `SELECT identifier FROM sim_claims WHERE claim_use = $1 AND related = ''
		GROUP BY payer, identifier HAVING COUNT(*) > 1 ORDER BY identifier`, useClaim)
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return s, err
		}
		s.ProcessedTwice = append(s.ProcessedTwice, id)
	}
	return s, rows.Err()
}

// ledgerView is the body of GET /sim/ledger.
type ledgerView struct {
	Summary  Summary         `json:"summary"`
	Claims   []ClaimRecord   `json:"claims"`
	Messages []MessageRecord `json:"messages,omitempty"`
}

// serveLedger answers GET /sim/ledger?identifier=&payer=&use=&outcome=&messages=true.
func (s *Simulator) serveLedger(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "identifier", "payer", "use", "outcome", "messages":
		default:
			writeJSONError(w, http.StatusBadRequest, errs.E(errs.Invalid, "unknown query parameter").InField(k))
			return
		}
	}
	ctx := r.Context()
	var v ledgerView
	var err error
	if v.Summary, err = s.ledger.Summary(ctx); err == nil {
		v.Claims, err = s.ledger.Claims(ctx, ClaimQuery{Identifier: q.Get("identifier"), Payer: q.Get("payer"), Use: q.Get("use"), Outcome: q.Get("outcome")})
	}
	if err == nil {
		if want, _ := strconv.ParseBool(q.Get("messages")); want {
			v.Messages, err = s.ledger.Messages(ctx)
		}
	}
	if err != nil {
		s.logger.Error("payer-sim: ledger", "err", err)
		writeJSONError(w, http.StatusInternalServerError, errs.E(errs.Internal, "the ledger could not be read"))
		return
	}
	if v.Claims == nil {
		v.Claims = []ClaimRecord{}
	}
	writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeJSONError answers the simulator's own (non-protocol) endpoints.
func writeJSONError(w http.ResponseWriter, status int, e *errs.Error) {
	body := map[string]string{"error": e.Error()}
	if e.Field != "" {
		body["field"] = e.Field
	}
	writeJSON(w, status, body)
}
