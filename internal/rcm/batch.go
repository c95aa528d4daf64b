package rcm

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Batches are many journeys started from one request (POST
// /api/v1/rcm/batches): a batch row, and per entry the journey it started
// or why it was refused (rcm_batches, rcm_batch_entries).
//
// Invariants:
//   - A batch stores no PHI. Entries are started as they are read and never
//     kept; an entry's refusal is the field and the rule it broke.
//   - An entry's journey is started with the idempotency key
//     EntryKey(batch, index), so starting it again (a retried POST, a
//     resumed batch) finds the same journey and never starts a second one.
//   - One entry's refusal does not stop the others. An error that is not
//     the entry's fault (the database, a timeout) stops the batch after
//     recording what was done; the same POST again (same Idempotency-Key)
//     resumes at the first entry without an outcome.
//   - Entries are started in chunks of batchChunk, each start its own
//     transaction, the chunk's outcomes one more: one batch never holds
//     SQLite's single writer for longer than one journey's start, so
//     other requests interleave with a 10,000-entry batch.
type Batches struct {
	db  *store.DB
	now func() time.Time
}

// NewBatches returns the batches stored in db; now is the clock (nil:
// time.Now).
func NewBatches(db *store.DB, now func() time.Time) *Batches {
	if now == nil {
		now = time.Now
	}
	return &Batches{db: db, now: now}
}

// batchChunk entries are started between two writes of their outcomes and
// two looks at the request's context.
const batchChunk = 100

// BatchJourneys is what a batch needs of the journeys, bound to whoever
// submits or reads the batch (the adapter over Service binds the caller's
// access guard, so every entry is decided and audited as that caller's
// own start would be).
type BatchJourneys interface {
	// StartEntry starts one entry's journey with opts (its idempotency key
	// and the batch id) and returns its id; the same key again returns the
	// same journey. An error of a client kind (errs.Invalid, NotFound,
	// Forbidden, Unprocessable, Conflict, PreconditionFailed, NotSupported)
	// refuses this entry only; any other error stops the batch.
	StartEntry(ctx context.Context, req JourneyRequest, opts BatchEntryOptions) (journeyID string, err error)
	// States reads the states of the named journeys; a journey the caller
	// may not see is absent from the map.
	States(ctx context.Context, journeyIDs []string) (map[string]JourneyState, error)
}

// BatchEntryOptions is how a batch starts one entry: the StartOptions of
// the journey's start.
type BatchEntryOptions struct {
	IdempotencyKey string
	BatchID        string
}

// JourneyState is what a batch counts of one journey.
type JourneyState struct {
	// State is the journey's state (running, waiting_on_payer, paid,
	// partially_paid, denied, failed...): counted as is.
	State string
	// Final: the journey will not move again by itself.
	Final bool
	// Failed: the journey ended without an outcome from the payer (an
	// error, a timeout): listed among the batch's failures.
	Failed bool
}

// EntryKey is the idempotency key of a batch's entry.
func EntryKey(batchID string, index int) string {
	return "batch:" + batchID + ":" + strconv.Itoa(index)
}

// BatchSubmission is one POST of a batch.
type BatchSubmission struct {
	// CreatedBy is the submitting principal's id.
	CreatedBy string
	// IdempotencyKey is the client's Idempotency-Key: the same key from
	// the same principal names the same batch. Without one the batch's id
	// is its key (Submit returns it), so any batch can be resumed.
	IdempotencyKey string
	Batch          DecodedBatch
	// StopAfter: no entry is started after this time (zero: no limit). The
	// entries left are pending; the same submission again continues. A
	// request bounds its work this way, below the server's write timeout.
	StopAfter time.Time
}

// idempotencyKey is the form of a client's Idempotency-Key: stored plain,
// so an identifier's characters.
var idempotencyKey = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,200}$`)

// Submit creates the batch (or, for an Idempotency-Key already used by
// the same principal with the same content, finds it) and starts every
// entry that has no outcome yet, until s.StopAfter. It returns the
// batch's id and whether this call created it. When the context ends,
// what was done is recorded and the error returned; the same submission
// again resumes.
func (b *Batches) Submit(ctx context.Context, s BatchSubmission, j BatchJourneys) (string, bool, error) {
	if s.IdempotencyKey != "" && !idempotencyKey.MatchString(s.IdempotencyKey) {
		return "", false, errs.E(errs.Invalid, "must be 1-200 letters, digits, '.', '_', ':' or '-'").InField("Idempotency-Key")
	}
	if len(s.Batch.Entries) == 0 || len(s.Batch.Entries) > MaxBatchEntries {
		return "", false, errs.E(errs.Invalid, "a batch holds 1 to %d entries", MaxBatchEntries)
	}
	id, created, err := b.open(ctx, s)
	if err != nil {
		return "", false, err
	}
	done, err := b.doneEntries(ctx, id)
	if err != nil {
		return id, created, err
	}
	pending := make([]int, 0, len(s.Batch.Entries)-len(done))
	for i := range s.Batch.Entries {
		if !done[i] {
			pending = append(pending, i)
		}
	}
	for len(pending) > 0 {
		chunk := pending[:min(batchChunk, len(pending))]
		pending = pending[len(chunk):]
		outcomes := make([]entryOutcome, 0, len(chunk))
		var stop error
		for _, i := range chunk {
			if !s.StopAfter.IsZero() && !b.now().Before(s.StopAfter) {
				pending = nil
				break
			}
			if err := ctx.Err(); err != nil {
				stop = errs.Wrap(errs.Unavailable, err, "the batch stopped before every entry was started; send it again with the same Idempotency-Key to resume")
				break
			}
			o := entryOutcome{index: i}
			e := s.Batch.Entries[i]
			if e.Err != nil {
				o.refuse(e.Err)
				outcomes = append(outcomes, o)
				continue
			}
			jid, err := j.StartEntry(ctx, e.Request, BatchEntryOptions{IdempotencyKey: EntryKey(id, i), BatchID: id})
			switch {
			case err == nil:
				o.journeyID = jid
			case entryFault(err):
				o.refuse(err)
			default:
				stop = fmt.Errorf("start batch entry %d: %w", i, err)
			}
			if stop != nil {
				break
			}
			outcomes = append(outcomes, o)
		}
		// What was done is recorded even when the batch stops, with a
		// context of its own: the request's may be what ended.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := b.record(wctx, id, outcomes)
		cancel()
		if err != nil {
			return id, created, err
		}
		if stop != nil {
			return id, created, stop
		}
	}
	return id, created, nil
}

// entryFault reports whether a start's error is the entry's own (refuse
// it, go on) rather than the system's (stop, resume later).
func entryFault(err error) bool {
	switch errs.KindOf(err) {
	case errs.Invalid, errs.NotFound, errs.Forbidden, errs.Unprocessable, errs.Conflict,
		errs.PreconditionFailed, errs.NotSupported, errs.UnsupportedType:
		return true
	}
	return false
}

type entryOutcome struct {
	index     int
	journeyID string
	field     string
	rule      string
}

// refuse records err as the entry's refusal: its field and message (an
// errs message names rules, never values).
func (o *entryOutcome) refuse(err error) {
	if e, ok := errs.As(err); ok {
		o.field, o.rule = e.Field, e.Message
	}
	if o.rule == "" {
		o.rule = string(errs.KindOf(err))
	}
	if len(o.rule) > 500 {
		o.rule = o.rule[:500]
	}
}

// open creates the batch row, or finds the one the principal's key names.
func (b *Batches) open(ctx context.Context, s BatchSubmission) (string, bool, error) {
	var id string
	created := false
	err := b.db.Tx(ctx, func(tx store.Tx) error {
		if s.IdempotencyKey != "" {
			var hash string
			err := tx.QueryRow(ctx, `SELECT id, source_hash FROM rcm_batches WHERE created_by = $1 AND idempotency_key = $2`,
				s.CreatedBy, s.IdempotencyKey).Scan(&id, &hash)
			if err == nil {
				if hash != s.Batch.SourceHash {
					return errs.E(errs.Conflict, "already names a batch with other content").InField("Idempotency-Key")
				}
				return nil
			}
			if err != store.ErrNoRows {
				return fmt.Errorf("find batch: %w", err)
			}
		}
		u, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("batch id: %w", err)
		}
		id = u.String()
		key := s.IdempotencyKey
		if key == "" {
			key = id
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rcm_batches (id, created_by, created_at, total, source_hash, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6)`,
			id, s.CreatedBy, b.now().UTC(), len(s.Batch.Entries), s.Batch.SourceHash, key); err != nil {
			if store.IsUniqueViolation(err) {
				return errs.E(errs.Conflict, "a batch with this key is being created; send it again").InField("Idempotency-Key")
			}
			return fmt.Errorf("store batch: %w", err)
		}
		created = true
		return nil
	})
	return id, created, err
}

// doneEntries is the set of a batch's entries that have an outcome.
func (b *Batches) doneEntries(ctx context.Context, id string) (map[int]bool, error) {
	rows, err := b.db.Reader().Query(ctx, `SELECT idx FROM rcm_batch_entries WHERE batch_id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("read batch entries: %w", err)
	}
	defer rows.Close()
	done := map[int]bool{}
	for rows.Next() {
		var i int
		if err := rows.Scan(&i); err != nil {
			return nil, fmt.Errorf("read batch entries: %w", err)
		}
		done[i] = true
	}
	return done, rows.Err()
}

// record writes a chunk's outcomes in one transaction. An outcome already
// there (a concurrent retry of the same batch got there first) is kept:
// both started the same journey, by its key.
func (b *Batches) record(ctx context.Context, id string, outcomes []entryOutcome) error {
	if len(outcomes) == 0 {
		return nil
	}
	return b.db.Tx(ctx, func(tx store.Tx) error {
		q := []byte(`INSERT INTO rcm_batch_entries (batch_id, idx, journey_id, refused_field, refused_rule) VALUES `)
		args := make([]any, 0, len(outcomes)*5)
		for i, o := range outcomes {
			if i > 0 {
				q = append(q, ',')
			}
			n := len(args)
			q = fmt.Appendf(q, "($%d,$%d,$%d,$%d,$%d)", n+1, n+2, n+3, n+4, n+5)
			var field, rule any
			if o.journeyID == "" {
				field, rule = o.field, o.rule
			}
			args = append(args, id, o.index, store.NullIfEmpty(o.journeyID), field, rule)
		}
		q = append(q, " ON CONFLICT (batch_id, idx) DO NOTHING"...)
		if _, err := tx.Exec(ctx, string(q), args...); err != nil {
			return fmt.Errorf("record batch entries: %w", err)
		}
		return nil
	})
}

// BatchStatus is a batch as GET /api/v1/rcm/batches/{id} shows it.
type BatchStatus struct {
	ID        string    `json:"id"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	// Total is the number of entries; Started of them started a journey,
	// Refused were refused; Pending have neither yet (the POST stopped
	// part-way: send it again with the same Idempotency-Key).
	Total   int `json:"total"`
	Started int `json:"started"`
	Refused int `json:"refused"`
	Pending int `json:"pending"`
	// States counts the started journeys by state.
	States map[string]int `json:"states"`
	// Final counts the started journeys in a final state.
	Final int `json:"final"`
	// Failures are the refused entries and the journeys that failed, by
	// entry index (at most maxBatchFailures; FailuresOmitted counts the
	// rest).
	Failures        []BatchFailure `json:"failures"`
	FailuresOmitted int            `json:"failures_omitted,omitempty"`
	// Done: every entry is refused or its journey is final.
	Done bool `json:"done"`
}

// BatchFailure is one entry that did not make it: refused at the start
// (Field and Reason), or whose journey failed (JourneyID and State).
type BatchFailure struct {
	Index     int    `json:"index"`
	JourneyID string `json:"journey_id,omitempty"`
	State     string `json:"state,omitempty"`
	Field     string `json:"field,omitempty"`
	Reason    string `json:"reason"`
}

const (
	maxBatchFailures = 1000
	// stateChunk journeys are asked for their states at once.
	stateChunk = 500
)

// ValidBatchID reports whether s has the form of a batch id.
func ValidBatchID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// Status reads a batch with its journeys' states as j sees them. A batch
// id that does not exist is errs.NotFound.
func (b *Batches) Status(ctx context.Context, id string, j BatchJourneys) (*BatchStatus, error) {
	if !ValidBatchID(id) {
		return nil, errs.E(errs.NotFound, "batch not found")
	}
	st := &BatchStatus{ID: id, States: map[string]int{}, Failures: []BatchFailure{}}
	q := b.db.Reader()
	err := q.QueryRow(ctx, `SELECT created_by, created_at, total FROM rcm_batches WHERE id = $1`, id).Scan(&st.CreatedBy, &st.CreatedAt, &st.Total)
	if err == store.ErrNoRows {
		return nil, errs.E(errs.NotFound, "batch not found")
	}
	if err != nil {
		return nil, fmt.Errorf("read batch: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT idx, journey_id, refused_field, refused_rule FROM rcm_batch_entries WHERE batch_id = $1 ORDER BY idx`, id)
	if err != nil {
		return nil, fmt.Errorf("read batch entries: %w", err)
	}
	defer rows.Close()
	var journeys []string
	indexOf := map[string]int{}
	fail := func(f BatchFailure) {
		if len(st.Failures) < maxBatchFailures {
			st.Failures = append(st.Failures, f)
		} else {
			st.FailuresOmitted++
		}
	}
	for rows.Next() {
		var idx int
		var jid, field, rule *string
		if err := rows.Scan(&idx, &jid, &field, &rule); err != nil {
			return nil, fmt.Errorf("read batch entries: %w", err)
		}
		if jid != nil {
			st.Started++
			journeys = append(journeys, *jid)
			indexOf[*jid] = idx
			continue
		}
		st.Refused++
		f := BatchFailure{Index: idx}
		if field != nil {
			f.Field = *field
		}
		if rule != nil {
			f.Reason = *rule
		}
		fail(f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read batch entries: %w", err)
	}
	rows.Close()
	st.Pending = st.Total - st.Started - st.Refused
	for start := 0; start < len(journeys); start += stateChunk {
		ids := journeys[start:min(len(journeys), start+stateChunk)]
		states, err := j.States(ctx, ids)
		if err != nil {
			return nil, err
		}
		for _, jid := range ids {
			s, ok := states[jid]
			if !ok {
				// Out of the reader's reach (or gone): counted as unknown,
				// never shown as a state it is not in.
				st.States["unknown"]++
				continue
			}
			st.States[s.State]++
			if s.Final {
				st.Final++
			}
			if s.Failed {
				fail(BatchFailure{Index: indexOf[jid], JourneyID: jid, State: s.State, Reason: "the journey failed"})
			}
		}
	}
	st.Done = st.Pending == 0 && st.Final == st.Started
	// Refusals were read first, failed journeys after: by entry index.
	sort.Slice(st.Failures, func(a, c int) bool { return st.Failures[a].Index < st.Failures[c].Index })
	return st, nil
}
