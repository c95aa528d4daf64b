package sim

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/store"
)

// outgoing is a message the payer sends a provider through the gateway.
type outgoing struct {
	payer        *payerState
	provider     string
	action       payer.Action
	correlation  string
	workflow     string
	status       string
	bundle       []byte
	errorDetails json.RawMessage
	claimID      string
	// kind is what the callback carries (answer, payment, communication,
	// eligibility, status, error): a delivered payment marks its claim paid.
	kind string
	due  time.Time
}

// enqueue encrypts a message for the provider (its registered encryption
// certificate) and stores it for delivery, in the caller's transaction.
// Under the duplicate fault the same message (same api_call_id) is stored
// twice and so delivered twice.
func (s *Simulator) enqueue(ctx context.Context, tx store.Tx, o outgoing) error {
	prov, ok := s.reg.lookup(o.provider)
	if !ok || prov.isSimulated {
		return fmt.Errorf("payer-sim: callback to %s: not a registered provider", o.provider)
	}
	key, err := hcx.RecipientKey(prov.encryption, s.now())
	if err != nil {
		return fmt.Errorf("payer-sim: callback to %s: %w", o.provider, err)
	}
	apiCallID := uuid.NewString()
	h := hcx.Header{SenderCode: o.payer.code, RecipientCode: o.provider, APICallID: apiCallID, CorrelationID: o.correlation,
		WorkflowID: o.workflow, Timestamp: s.now(), Status: o.status, ErrorDetails: o.errorDetails}
	body := o.bundle
	if body == nil {
		body = []byte{}
	}
	compact, err := hcx.Encrypt(h, body, key)
	if err != nil {
		return fmt.Errorf("payer-sim: callback to %s: %w", o.provider, err)
	}
	if o.kind != "payment" {
		o.due = o.due.Add(s.dice.latency(o.payer.rules.Faults.AnswerDelay))
	}
	copies := 1
	if s.dice.chance(o.payer.rules.Faults.DuplicateCallbacks) {
		copies = 2
	}
	for range copies {
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sim_callbacks (id, claim_id, kind, correlation_id, recipient, action, api_call_id, payload, due_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			id.String(), o.claimID, o.kind, o.correlation, o.provider, string(o.action), apiCallID, compact, o.due); err != nil {
			return err
		}
	}
	return nil
}

// deliverer posts stored callbacks to the providers' endpoints: due ones
// in id order, a few at once, one correlation's callbacks in the order
// they were stored (an undelivered one holds back those after it),
// retrying failures with a doubling backoff. Callbacks live in sim_callbacks, so they survive a
// restart and a provider that was down gets its answers when it is back.
type deliverer struct {
	s          *Simulator
	poll       time.Duration
	timeout    time.Duration
	maxBackoff time.Duration
	wakeCh     chan struct{}

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

func newDeliverer(s *Simulator, cfg Config) *deliverer {
	d := &deliverer{s: s, poll: cfg.PollInterval, timeout: cfg.CallbackTimeout, maxBackoff: cfg.MaxBackoff, wakeCh: make(chan struct{}, 1)}
	if d.poll <= 0 {
		d.poll = 100 * time.Millisecond
	}
	if d.maxBackoff <= 0 {
		d.maxBackoff = 30 * time.Second
	}
	return d
}

func (d *deliverer) timeoutOr(def time.Duration) time.Duration {
	if d.timeout > 0 {
		return d.timeout
	}
	return def
}

// wake makes the deliverer look for due callbacks now.
func (d *deliverer) wake() {
	select {
	case d.wakeCh <- struct{}{}:
	default:
	}
}

func (d *deliverer) start(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != nil {
		return
	}
	ctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	d.done = make(chan struct{})
	go d.run(ctx)
}

func (d *deliverer) stop(ctx context.Context) error {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.cancel = nil
	d.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *deliverer) run(ctx context.Context) {
	defer close(d.done)
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		for {
			n, err := d.pass(ctx)
			if err != nil && ctx.Err() == nil {
				d.s.logger.Error("payer-sim: callback pass", "err", err)
			}
			if n == 0 || err != nil || ctx.Err() != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.wakeCh:
		}
	}
}

// pendingCallback is a stored callback due for delivery.
type pendingCallback struct {
	id, claimID, kind, recipient, action, apiCallID, payload string
	attempts                                                 int
}

// pass delivers the callbacks due now and returns how many it attempted.
func (d *deliverer) pass(ctx context.Context) (int, error) {
	now := d.s.now()
	rows, err := d.s.db.Reader().Query(ctx, `SELECT c.id, c.claim_id, c.kind, c.recipient, c.action, c.api_call_id, c.payload, c.attempts
		FROM sim_callbacks c
		WHERE c.delivered_at IS NULL AND c.due_at <= $1
		AND NOT EXISTS (SELECT 1 FROM sim_callbacks e WHERE e.correlation_id = c.correlation_id AND e.delivered_at IS NULL AND e.id < c.id)
		ORDER BY c.id LIMIT 50`, now)
	if err != nil {
		return 0, err
	}
	var due []pendingCallback
	for rows.Next() {
		var p pendingCallback
		if err := rows.Scan(&p.id, &p.claimID, &p.kind, &p.recipient, &p.action, &p.apiCallID, &p.payload, &p.attempts); err != nil {
			rows.Close()
			return 0, err
		}
		due = append(due, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	// The query picks at most one callback per correlation (the first one
	// not yet delivered), so delivering the batch concurrently keeps each
	// correlation's order, and a slow provider holds back only its own.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, deliveryWorkers)
	)
	for _, p := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := d.deliver(ctx, p); err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil || ctx.Err() != nil {
		return 0, firstErr
	}
	return len(due), nil
}

// deliveryWorkers bounds the callbacks delivered at once.
const deliveryWorkers = 4

// deliver posts one callback and records the outcome: delivered (a 2xx),
// given up (a 4xx refusal other than 408/429: sending it again cannot
// succeed), or due again after a backoff.
func (d *deliverer) deliver(ctx context.Context, p pendingCallback) error {
	status, err := d.post(ctx, p)
	if ctx.Err() != nil {
		return nil // stopping: the callback stays pending for the next start
	}
	now := d.s.now()
	final := err == nil && (status/100 == 2 || (status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests))
	return d.s.db.Tx(ctx, func(tx store.Tx) error {
		if !final {
			backoff := min(250*time.Millisecond<<min(p.attempts, 16), d.maxBackoff)
			_, err := tx.Exec(ctx, `UPDATE sim_callbacks SET attempts = attempts + 1, last_status = $2, due_at = $3 WHERE id = $1`,
				p.id, status, now.Add(backoff))
			d.s.logger.Info("payer-sim: callback not delivered; retrying", "action", p.action, "recipient", p.recipient, "api_call_id", p.apiCallID, "status", status, "attempt", p.attempts+1)
			return err
		}
		if status/100 != 2 {
			d.s.logger.Warn("payer-sim: callback refused by the provider; not sent again", "action", p.action, "recipient", p.recipient, "api_call_id", p.apiCallID, "status", status)
		}
		if _, err := tx.Exec(ctx, `UPDATE sim_callbacks SET attempts = attempts + 1, last_status = $2, delivered_at = $3 WHERE id = $1`, p.id, status, now); err != nil {
			return err
		}
		if p.kind == "payment" && status/100 == 2 {
			_, err := tx.Exec(ctx, `UPDATE sim_claims SET state = $2, paid_at = $3 WHERE id = $1 AND paid_at IS NULL`, p.claimID, StatePaid, now)
			return err
		}
		return nil
	})
}

// post sends one callback to {endpoint_url}/{action} with a gateway
// bearer token, through the outbound client (registered hosts only).
func (d *deliverer) post(ctx context.Context, p pendingCallback) (int, error) {
	prov, ok := d.s.reg.lookup(p.recipient)
	if !ok {
		return 0, errors.New("the recipient is no longer registered")
	}
	token, err := d.s.tokens.For(d.s.gateway.key, p.recipient)
	if err != nil {
		return 0, err
	}
	url := strings.TrimSuffix(prov.rec.EndpointURL, "/") + "/" + p.action
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(hcx.MarshalBody(p.payload)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := d.s.reg.client.Load().Do(ctx, req)
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}
