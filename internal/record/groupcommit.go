package record

import (
	"context"
	"fmt"
	"sync"

	"github.com/careflow/careflow/internal/store"
)

// Group commit of plain creates. A create is dominated by its durable
// commit (the WAL pages of its ~25 randomly placed index rows, and the
// fsync); creates that arrive while one is committing wait and then commit
// together, so one transaction and one fsync serve them all. A create that
// fails is taken out and the rest run again, so one create's failure
// leaves the others intact.
// There is no background goroutine: the first caller to find no commit
// running leads one batch, then hands the lead to the next waiter.

// maxGroup bounds a batch, so that a leader's own request is never held
// behind an unbounded queue and one transaction stays short.
const maxGroup = 64

type createReq struct {
	// ctx is the caller's; the batch runs under a copy that is not
	// cancelled with it (one client going away must not fail the others).
	ctx  context.Context
	g    Guard
	typ  string
	body []byte
	rec  Record
	err  error
	// done is closed when the request's batch committed (or failed);
	// lead is signalled when the request must lead the next batch.
	done chan struct{}
	lead chan struct{}
}

type committer struct {
	mu      sync.Mutex
	pending []*createReq
	running bool
}

// maxGroupedBody is the largest create that joins a group. Creates of real
// records are a few kilobytes; a larger one (up to what the limits allow:
// about a second of index rows) commits in a transaction of its own, so
// that the creates queued behind it do not wait for its rows inside a
// shared transaction. On PostgreSQL they then commit beside it; on SQLite
// they wait for the one writer either way, but never for its failure and
// retry.
const maxGroupedBody = 64 << 10

// createGrouped runs a plain create through the group committer.
func (s *Service) createGrouped(ctx context.Context, g Guard, typ string, body []byte) (Record, error) {
	if len(body) > maxGroupedBody {
		var rec Record
		err := s.db.Tx(ctx, func(tx store.Tx) error {
			var err error
			rec, _, err = s.createTx(ctx, tx, g, typ, "", body, "")
			return err
		})
		return rec, err
	}
	req := &createReq{ctx: ctx, g: g, typ: typ, body: body, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	c := &s.group
	c.mu.Lock()
	c.pending = append(c.pending, req)
	leader := !c.running
	if leader {
		c.running = true
	}
	c.mu.Unlock()
	if !leader {
		select {
		case <-req.done:
			return req.rec, req.err
		case <-req.lead:
		}
	}
	s.leadBatch()
	<-req.done
	return req.rec, req.err
}

// leadBatch takes up to maxGroup waiting creates, commits them in one
// transaction, and passes the lead to the next waiter, if any.
func (s *Service) leadBatch() {
	c := &s.group
	c.mu.Lock()
	n := min(len(c.pending), maxGroup)
	batch := c.pending[:n:n]
	c.pending = c.pending[n:]
	c.mu.Unlock()

	// The batch outlives any one caller's cancellation: it commits for all.
	ctx := context.WithoutCancel(batch[0].ctx)
	remaining := batch
	for len(remaining) > 0 {
		var failed *createReq
		err := s.db.Tx(ctx, func(tx store.Tx) error {
			for _, req := range remaining {
				req.rec, _, req.err = s.createTx(ctx, tx, req.g, req.typ, "", req.body, "")
				if req.err != nil {
					failed = req
					return req.err
				}
			}
			return nil
		})
		if err == nil {
			break
		}
		if failed == nil {
			// The transaction itself failed: every create of it did.
			for _, req := range remaining {
				req.rec, req.err = Record{}, fmt.Errorf("commit of a group of %d creates: %w", len(remaining), err)
			}
			break
		}
		// One create failed (a refusal, a conflict): it keeps its error
		// and the others run again without it, in a new transaction.
		// Failures are rare, so this costs less than a savepoint per
		// create, which on SQLite journals every page it touches.
		rest := make([]*createReq, 0, len(remaining)-1)
		for _, req := range remaining {
			if req != failed {
				rest = append(rest, req)
			}
		}
		remaining = rest
	}
	for _, req := range batch {
		close(req.done)
	}

	c.mu.Lock()
	if len(c.pending) == 0 {
		c.running = false
	} else {
		c.pending[0].lead <- struct{}{}
	}
	c.mu.Unlock()
}
