package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Wake-ups: work that waits for something another transaction writes (the
// engine's timers, the events publisher) sleeps until it is told, instead of
// asking the database every few milliseconds. A transaction names the topic
// it wakes (Notify); the wake-up is delivered once, and only if, it commits;
// whoever subscribed to the topic (Subscribe) receives it on a channel.
//
// On SQLite one process works the file, and its commits are the ones that
// matter: a wake-up goes to the process's subscribers right after the
// commit returns. On PostgreSQL every node must hear every node's commits:
// Notify is a pg_notify on one channel in the transaction, which the server
// delivers at commit to every session listening on it; each process keeps
// one connection that listens and hands the topics to its subscribers. A
// process's own commits are also handed to its subscribers at once.
//
// A wake-up is a hint, not a message: subscribers re-read the database to
// see what changed. They may be woken for nothing, and several wake-ups
// may arrive as one. When the listening connection is lost, every
// subscriber is woken after it is back (notifications sent meanwhile are
// lost), and a wake-up may be missed while a process starts: subscribers
// look at the database once when they start, and keep a slow fallback
// timer for writes from other processes on SQLite (the command line).

// wakeChannel is the PostgreSQL notification channel of every topic.
const wakeChannel = "careflow_wake"

// Subscription receives the wake-ups of one topic on C. C holds at most
// one pending wake-up: wake-ups arriving while one is pending are merged
// into it.
type Subscription struct {
	C     <-chan struct{}
	c     chan struct{}
	topic string
	hub   *wakeHub
}

// Close stops the subscription's wake-ups. C is not closed.
func (s *Subscription) Close() { s.hub.remove(s) }

// wakeHub hands wake-ups to a process's subscribers.
type wakeHub struct {
	mu   sync.Mutex
	subs map[string]map[*Subscription]struct{}
}

func (h *wakeHub) add(topic string) *Subscription {
	c := make(chan struct{}, 1)
	s := &Subscription{C: c, c: c, topic: topic, hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[string]map[*Subscription]struct{}{}
	}
	if h.subs[topic] == nil {
		h.subs[topic] = map[*Subscription]struct{}{}
	}
	h.subs[topic][s] = struct{}{}
	return s
}

func (h *wakeHub) remove(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs[s.topic], s)
}

// fire wakes the subscribers of each topic.
func (h *wakeHub) fire(topics ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range topics {
		for s := range h.subs[t] {
			select {
			case s.c <- struct{}{}:
			default: // one is pending already
			}
		}
	}
}

// fireAll wakes every subscriber (after wake-ups may have been lost).
func (h *wakeHub) fireAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, subs := range h.subs {
		for s := range subs {
			select {
			case s.c <- struct{}{}:
			default:
			}
		}
	}
}

// wakes are the topics a transaction wakes at commit, each once.
type wakes []string

func (w *wakes) add(topic string) bool {
	for _, t := range *w {
		if t == topic {
			return false
		}
	}
	*w = append(*w, topic)
	return true
}

// Notify wakes the subscribers of topic, on every node, once tx commits;
// nothing happens if it rolls back. Topics are short constant names, never
// data.
func Notify(ctx context.Context, tx Tx, topic string) error {
	switch t := tx.(type) {
	case *sqliteTx:
		t.wakes.add(topic)
		return nil
	case *pgTx:
		if !t.wakes.add(topic) {
			return nil
		}
		_, err := t.tx.Exec(ctx, `SELECT pg_notify($1, $2)`, wakeChannel, topic)
		return err
	}
	return errors.New("store: Notify needs a transaction of DB.Tx")
}

// afterCommit is what a transaction runs once it has committed.
type afterCommit []func()

func (a afterCommit) run() {
	for _, fn := range a {
		fn()
	}
}

// AfterCommit runs fn once tx has committed (not if it rolls back), in the
// goroutine that ran the transaction, after its wake-ups. fn must be quick
// and must not fail: the transaction is done. It is for in-process
// decisions that need to see the commit (whether to wake a loop that may
// have read the database before it).
func AfterCommit(tx Tx, fn func()) error {
	switch t := tx.(type) {
	case *sqliteTx:
		t.after = append(t.after, fn)
		return nil
	case *pgTx:
		t.after = append(t.after, fn)
		return nil
	}
	return errors.New("store: AfterCommit needs a transaction of DB.Tx")
}

// Subscribe returns a subscription to topic's wake-ups. On PostgreSQL the
// first subscription starts the process's listening connection.
func (db *DB) Subscribe(topic string) *Subscription {
	s := db.hub.add(topic)
	if db.dialect == Postgres {
		db.listenOnce.Do(db.startListening)
	}
	return s
}

// startListening runs the PostgreSQL listener until Close.
func (db *DB) startListening() {
	ctx, cancel := context.WithCancel(context.Background())
	db.stopListening = cancel
	db.listenDone = make(chan struct{})
	go func() {
		defer close(db.listenDone)
		backoff := 100 * time.Millisecond
		for ctx.Err() == nil {
			err := db.listen(ctx)
			if ctx.Err() != nil {
				return
			}
			db.logger.Warn("database: the wake-up listener lost its connection; reconnecting", "error", redactPgErr(err).Error())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
}

// listen holds one connection listening on the wake-up channel and hands
// what arrives to the subscribers, until the connection fails or ctx ends.
func (db *DB) listen(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, `LISTEN `+wakeChannel); err != nil {
		return err
	}
	// Whatever was committed before LISTEN took effect went unheard.
	db.hub.fireAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		db.hub.fire(n.Payload)
	}
}
