package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/careflow/careflow/internal/store"
)

// On SQLite River emulates LISTEN/NOTIFY with a table: a notification is a
// row of river_notification written in the notifying transaction, and
// River's listener reads the table every 50ms, even when nothing happens.
// One process works a SQLite file and every one of its writes goes through
// the store's writer connection, which sees each commit that inserts River
// jobs or notifications (store.RiverTopic). sqliteDriver hands River a
// listener that reads the table when told so, not on a timer.
//
// It also makes up for River's insert notifications not being sent for
// every insert: River sends at most one per queue per FetchCooldown, and a
// job inserted just after one would wait for the next fetch poll. Every
// commit that inserted jobs is turned into an insert notification for each
// of the process's queues (a fetch of a queue with nothing new costs one
// indexed read).
//
// River's driver interface marks GetListener as not stable; this is tied
// to the River version in go.mod, and its tests (TestSQLiteListener*)
// fail if River stops calling it.

// listenerFallback is how often the listener reads the table without being
// told: it covers writes by another process (the command line) only.
const listenerFallback = 5 * time.Second

// sqliteDriver is River's SQLite driver with careflow's listener.
type sqliteDriver struct {
	*riversqlite.Driver
	db     *store.DB
	queues []string
}

func (d *sqliteDriver) GetListener(params *riverdriver.GetListenenerParams) riverdriver.Listener {
	return &sqliteListener{db: d.db, schema: params.Schema, queues: d.queues}
}

// insertTopic is River's topic of insert notifications; River's producers
// fetch when one names their queue.
const insertTopic = "river_insert"

// sqliteListener implements riverdriver.Listener over river_notification,
// woken by the store's commits.
type sqliteListener struct {
	db     *store.DB
	schema string
	queues []string

	mu      sync.Mutex
	sub     *store.Subscription
	lastID  int64
	topics  map[string]int64 // topic → the last id before it was listened to
	pending []*riverdriver.Notification
}

func (l *sqliteListener) table() string {
	if l.schema != "" {
		return l.schema + ".river_notification"
	}
	return "river_notification"
}

func (l *sqliteListener) Connect(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sub != nil {
		return errors.New("jobs: listener already connected")
	}
	last, err := l.maxID(ctx)
	if err != nil {
		return err
	}
	l.sub = l.db.Subscribe(store.RiverTopic)
	l.lastID, l.topics, l.pending = last, map[string]int64{}, nil
	return nil
}

func (l *sqliteListener) maxID(ctx context.Context) (int64, error) {
	var id int64
	err := l.db.Reader().QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM `+l.table()).Scan(&id)
	return id, err
}

func (l *sqliteListener) Close(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sub != nil {
		l.sub.Close()
		l.sub = nil
	}
	l.topics, l.pending = nil, nil
	return nil
}

func (l *sqliteListener) Listen(ctx context.Context, topic string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sub == nil {
		return errors.New("jobs: listener not connected")
	}
	if _, ok := l.topics[topic]; ok {
		return nil
	}
	last, err := l.maxID(ctx)
	if err != nil {
		return err
	}
	l.topics[topic] = max(l.lastID, last)
	return nil
}

func (l *sqliteListener) Unlisten(_ context.Context, topic string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.topics, topic)
	return nil
}

func (l *sqliteListener) Ping(ctx context.Context) error { return l.db.Ping(ctx) }
func (l *sqliteListener) Schema() string                 { return l.schema }
func (l *sqliteListener) SetAfterConnectExec(string)     {}

// WaitForNotification returns the next notification: one already read, or
// the next the table holds once a commit (or the fallback timer) says to
// look.
func (l *sqliteListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	timer := time.NewTimer(listenerFallback)
	defer timer.Stop()
	woken := false
	for {
		l.mu.Lock()
		if l.sub == nil {
			l.mu.Unlock()
			return nil, errors.New("jobs: listener not connected")
		}
		if len(l.pending) == 0 {
			if err := l.read(ctx, woken); err != nil {
				l.mu.Unlock()
				return nil, err
			}
		}
		if len(l.pending) > 0 {
			n := l.pending[0]
			l.pending = l.pending[1:]
			l.mu.Unlock()
			return n, nil
		}
		c := l.sub.C
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c:
			woken = true
		case <-timer.C:
			woken = false
			timer.Reset(listenerFallback)
		}
	}
}

// read queues the notifications stored since the last read for the topics
// listened to; after a commit's wake-up it also queues an insert
// notification for every queue of the process. l.mu is held.
func (l *sqliteListener) read(ctx context.Context, woken bool) error {
	rows, err := l.db.Reader().Query(ctx, `SELECT id, payload, topic FROM `+l.table()+` WHERE id > $1 ORDER BY id LIMIT 256`, l.lastID)
	if err != nil {
		return fmt.Errorf("jobs: read notifications: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id             int64
			payload, topic string
		)
		if err := rows.Scan(&id, &payload, &topic); err != nil {
			return err
		}
		l.lastID = id
		if start, ok := l.topics[topic]; ok && id > start {
			l.pending = append(l.pending, &riverdriver.Notification{Topic: topic, Payload: payload})
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	if _, ok := l.topics[insertTopic]; ok && woken {
		for _, q := range l.queues {
			l.pending = append(l.pending, &riverdriver.Notification{Topic: insertTopic, Payload: fmt.Sprintf(`{"queue": %q}`, q)})
		}
	}
	return nil
}
