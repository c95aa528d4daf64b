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
// There is no background goroutine: a caller that finds fewer batches
// running than the backend allows leads one, and a leader that finishes
// hands the creates waiting by then, as the next batch, to the first of
// them. On SQLite one batch runs at a time (there is one writer; a second
// would only wait for it). On PostgreSQL several do (groupLeaders): a
// create there is a dozen round trips, during which one batch's
// connection waits on the network and the server, not on the disk, and the
// server flushes the commits of batches that end together in one WAL
// flush. With one batch at a time the batch grew with the connections (32
// creates a transaction at 64), each of its creates still took its round
// trips one after another, and the pool's other connections sat idle: the
// rate stayed flat from 16 to 64 connections, and side by side it rose
// 1.3-3.7x on the same box (BENCHMARKS.md, "Write path (issue 13)").
// Invariant: creates wait in pending only while every leader's place is
// taken (a caller that finds a place free leads at once, and a leader
// gives its place up only when pending is empty), so a waiter is always
// handed a batch by a leader that finishes.

// groupLeaders is how many batches commit at once on PostgreSQL.
const groupLeaders = 4

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
	lead chan []*createReq
}

type committer struct {
	mu      sync.Mutex
	pending []*createReq
	running int
}

// leaders is how many batches may run at once on s's backend.
func (s *Service) leaders() int {
	if s.db.Dialect() == store.Postgres {
		return groupLeaders
	}
	return 1
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
	req := &createReq{ctx: ctx, g: g, typ: typ, body: body, done: make(chan struct{}), lead: make(chan []*createReq, 1)}
	c := &s.group
	c.mu.Lock()
	if c.running < s.leaders() {
		// pending is empty (see the invariant above): lead a batch of one,
		// topped up by whatever arrives before it starts.
		c.running++
		c.mu.Unlock()
		s.leadBatch([]*createReq{req})
	} else {
		c.pending = append(c.pending, req)
		c.mu.Unlock()
		select {
		case <-req.done:
			return req.rec, req.err
		case batch := <-req.lead:
			s.leadBatch(batch)
		}
	}
	<-req.done
	return req.rec, req.err
}

// leadBatch commits batch, with the creates waiting when it starts (up to
// maxGroup in all), in one transaction, then hands the creates waiting by
// then to the first of them as the next batch, or gives its place up.
func (s *Service) leadBatch(batch []*createReq) {
	c := &s.group
	c.mu.Lock()
	n := min(len(c.pending), maxGroup-len(batch))
	batch = append(batch, c.pending[:n]...)
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
		c.running--
	} else {
		n := min(len(c.pending), maxGroup)
		next := c.pending[:n:n]
		c.pending = c.pending[n:]
		// Taken out of pending, so no other leader hands it a batch: the
		// channel's one slot is enough.
		next[0].lead <- next
	}
	c.mu.Unlock()
}
