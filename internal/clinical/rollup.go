package clinical

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/store"
)

// The analytics rollup: what GET /analytics reports, kept per day as the
// workflows change, so a range is answered by reading its days, not its
// workflows and their steps.
//
// A workflow contributes one cell: the counts and histograms of itself and
// its steps (contributionOf). A cell is filed under the workflow's creation
// day (UTC), type, priority and provider, in two tables written in the
// transaction of every change (a commit hook adds the change's difference,
// after minus before):
//   - clinical_rollup, one row per day, type, priority and provider: what a
//     caller who reaches every patient reads;
//   - clinical_rollup_patients, one row per patient and day, holding that
//     patient's cells by type, priority and provider: what a caller confined
//     to a care team's patients reads, and what is taken away from the
//     first for patients excepted from a caller's reach.
//
// The invariant: each table holds exactly the sum of the contributions of
// the workflows stored (rollupFromRows recomputes it; the tests compare).
//
// Durations are histograms in buckets (bucketOf): exact to a tenth of a
// minute under ten minutes, then 2 % wide, so a median or p90 read from
// them is within 1 % of the one read from the rows. The steps still waiting
// and the steps not yet finished are kept by minute (of creation, of due
// time), because their wait and whether they are overdue depend on the
// moment the analytics are asked.

// pair is a key and a count, kept sorted by key.
type pair struct{ k, n int64 }

// stepCell is one kind of step (code and role) in a cell.
type stepCell struct {
	code, role string
	// wait: started steps, by bucket of creation to start.
	wait []pair
	// pending: steps not started of active workflows, by Unix minute of
	// creation.
	pending []pair
	// due: unfinished steps of active workflows, by Unix minute of the due
	// time rounded up (overdue once that minute has begun).
	due []pair
}

// cell is the contribution of one or more workflows.
type cell struct {
	// status: workflows by statusIndex.
	status []pair
	// ttc: completed workflows by bucket of creation to completion.
	ttc []pair
	// done: completed workflows by Unix day of completion.
	done  []pair
	steps []stepCell
}

// subKey is what a cell is filed under within a day.
type subKey struct {
	typ      WorkflowType
	rank     int64
	provider string
}

func (a subKey) compare(b subKey) int {
	if c := strings.Compare(string(a.typ), string(b.typ)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.rank, b.rank); c != 0 {
		return c
	}
	return strings.Compare(a.provider, b.provider)
}

// entry is a cell with its key; a cellset is a day's entries in key order
// (one in a clinical_rollup row, one per type, priority and provider of the
// patient's workflows that day in a clinical_rollup_patients row).
type entry struct {
	key subKey
	c   cell
}

type cellset []entry

// statusOrder gives each workflow status its index in a cell; new states
// are added at the end (the index is stored).
var statusOrder = []Status{StatusActive, StatusCompleted, StatusCancelled}

func statusIndex(s Status) int64 {
	return int64(slices.Index(statusOrder, s))
}

// bucketOf files a duration: tenths of a minute, exact under ten minutes,
// then buckets 2 % wide.
func bucketOf(d time.Duration) int64 {
	return bucketOfTenths(int64(math.Round(max(d.Minutes(), 0) * 10)))
}

// bucketOfTenths files a duration given in tenths of a minute.
func bucketOfTenths(t int64) int64 {
	if t < 100 {
		return max(t, 0)
	}
	i, found := slices.BinarySearch(bucketBounds, t)
	if !found {
		i--
	}
	return 100 + int64(i)
}

// bucketBounds[i] is the least duration, in tenths of a minute, of bucket
// 100+i: 100 tenths times 1.02 to the i, rounded up; the last bucket takes
// everything longer (about 3,000 years).
var bucketBounds = func() []int64 {
	b := make([]int64, maxBucket-100+1)
	for i := range b {
		b[i] = int64(math.Ceil(100 * math.Pow(1.02, float64(i))))
	}
	return b
}()

// maxBucket is the last bucket.
const maxBucket = 1500

// bucketMinutes is a bucket's value in minutes: its geometric middle,
// rounded to a tenth.
func bucketMinutes(b int64) float64 {
	if b < 100 {
		return float64(b) / 10
	}
	i := min(int(b-100), len(bucketBounds)-2)
	return math.Round(math.Sqrt(float64(bucketBounds[i])*float64(bucketBounds[i+1]))) / 10
}

func unixDay(t time.Time) int64 { return t.Unix() / 86400 }

func dayTime(d int64) time.Time { return time.Unix(d*86400, 0).UTC() }

// ceilMinute is t's Unix minute rounded up.
func ceilMinute(t time.Time) int64 {
	m := t.Unix() / 60
	if t.Unix()%60 != 0 || t.Nanosecond() != 0 {
		m++
	}
	return m
}

// contributionOf is what one workflow adds to the rollup, and where.
func contributionOf(w *workflowRow, steps []*stepRow) contrib {
	c := cell{status: []pair{{statusIndex(w.Status), 1}}}
	if w.Status == StatusCompleted && w.CompletedAt != nil {
		c.ttc = []pair{{bucketOf(w.CompletedAt.Sub(w.CreatedAt)), 1}}
		c.done = []pair{{unixDay(*w.CompletedAt), 1}}
	}
	active := w.Status == StatusActive
	for _, st := range steps {
		var sc stepCell
		sc.code, sc.role = st.Code, st.Role
		switch {
		case st.StartedAt != nil:
			sc.wait = []pair{{bucketOf(st.StartedAt.Sub(st.CreatedAt)), 1}}
		case st.Status == StepPending && active:
			sc.pending = []pair{{st.CreatedAt.Unix() / 60, 1}}
		}
		if active && !st.Status.Final() && st.DueAt != nil {
			sc.due = []pair{{ceilMinute(*st.DueAt), 1}}
		}
		c.addStep(sc, 1)
	}
	return contrib{patient: w.PatientID, day: unixDay(w.CreatedAt),
		key: subKey{typ: w.Type, rank: int64(w.Priority.rank()), provider: w.ProviderID}, c: c}
}

// addPairs adds sign·b to a, both sorted; zero counts are dropped.
func addPairs(a, b []pair, sign int64) []pair {
	if len(b) == 0 {
		return a
	}
	out := make([]pair, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].k < b[j].k):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].k < a[i].k:
			out = append(out, pair{b[j].k, sign * b[j].n})
			j++
		default:
			if n := a[i].n + sign*b[j].n; n != 0 {
				out = append(out, pair{a[i].k, n})
			}
			i++
			j++
		}
	}
	return out
}

func (sc *stepCell) empty() bool {
	return len(sc.wait) == 0 && len(sc.pending) == 0 && len(sc.due) == 0
}

// addStep adds sign·sc to c's step of the same code and role.
func (c *cell) addStep(sc stepCell, sign int64) {
	i, found := slices.BinarySearchFunc(c.steps, sc, func(a, b stepCell) int {
		if x := strings.Compare(a.code, b.code); x != 0 {
			return x
		}
		return strings.Compare(a.role, b.role)
	})
	if !found {
		if sc.empty() {
			return
		}
		c.steps = slices.Insert(c.steps, i, stepCell{code: sc.code, role: sc.role})
	}
	t := &c.steps[i]
	t.wait = addPairs(t.wait, sc.wait, sign)
	t.pending = addPairs(t.pending, sc.pending, sign)
	t.due = addPairs(t.due, sc.due, sign)
	if t.empty() {
		c.steps = slices.Delete(c.steps, i, i+1)
	}
}

// add adds sign·o to c.
func (c *cell) add(o *cell, sign int64) {
	c.status = addPairs(c.status, o.status, sign)
	c.ttc = addPairs(c.ttc, o.ttc, sign)
	c.done = addPairs(c.done, o.done, sign)
	for _, sc := range o.steps {
		c.addStep(sc, sign)
	}
}

func (c *cell) empty() bool {
	return len(c.status) == 0 && len(c.ttc) == 0 && len(c.done) == 0 && len(c.steps) == 0
}

// add adds sign·c to the set's entry of key k, dropping it when it empties.
func (cs *cellset) add(k subKey, c *cell, sign int64) {
	i, found := slices.BinarySearchFunc(*cs, k, func(e entry, k subKey) int { return e.key.compare(k) })
	if !found {
		if c.empty() {
			return
		}
		*cs = slices.Insert(*cs, i, entry{key: k})
	}
	e := &(*cs)[i]
	e.c.add(c, sign)
	if e.c.empty() {
		*cs = slices.Delete(*cs, i, i+1)
	}
}

// rollupDelta is a transaction's change to the rollup: the cells it adds
// and takes away, by row. It is written by a commit hook, so the rows every
// writer of a day and provider shares are locked only for the commit.
type rollupDelta struct {
	global  map[globalKey]*cellset
	patient map[patientKey]*cellset
}

type globalKey struct {
	day int64
	key subKey
}

type patientKey struct {
	patient string
	day     int64
}

type rollupHookKey struct{}

// rollupChange records, in tx, that a workflow's contribution went from
// before (nil for a new workflow) to what w and steps give now.
func rollupChange(tx store.Tx, before *contrib, w *workflowRow, steps []*stepRow) {
	d := tx.Hook(rollupHookKey{}, func() store.CommitHook {
		return &rollupDelta{global: map[globalKey]*cellset{}, patient: map[patientKey]*cellset{}}
	}).(*rollupDelta)
	after := contributionOf(w, steps)
	if before != nil {
		d.add(before, -1)
	}
	d.add(&after, 1)
}

// contrib is a workflow's contribution with where it is filed.
type contrib struct {
	patient string
	day     int64
	key     subKey
	c       cell
}

func (d *rollupDelta) add(c *contrib, sign int64) {
	gk := globalKey{day: c.day, key: c.key}
	if d.global[gk] == nil {
		d.global[gk] = &cellset{}
	}
	d.global[gk].add(c.key, &c.c, sign)
	pk := patientKey{patient: c.patient, day: c.day}
	if d.patient[pk] == nil {
		d.patient[pk] = &cellset{}
	}
	d.patient[pk].add(c.key, &c.c, sign)
}

// BeforeCommit writes the delta, rows in key order so that two
// transactions lock shared rows in the same order.
func (d *rollupDelta) BeforeCommit(ctx context.Context, tx store.Tx) error {
	gks := make([]globalKey, 0, len(d.global))
	for k, cs := range d.global {
		if len(*cs) > 0 {
			gks = append(gks, k)
		}
	}
	slices.SortFunc(gks, func(a, b globalKey) int {
		if a.day != b.day {
			return int(a.day - b.day)
		}
		return a.key.compare(b.key)
	})
	for _, k := range gks {
		if err := applyRow(ctx, tx, globalRow(k), d.global[k]); err != nil {
			return err
		}
	}
	pks := make([]patientKey, 0, len(d.patient))
	for k, cs := range d.patient {
		if len(*cs) > 0 {
			pks = append(pks, k)
		}
	}
	slices.SortFunc(pks, func(a, b patientKey) int {
		if c := strings.Compare(a.patient, b.patient); c != 0 {
			return c
		}
		return int(a.day - b.day)
	})
	for _, k := range pks {
		if err := applyRow(ctx, tx, patientRow(k), d.patient[k]); err != nil {
			return err
		}
	}
	return nil
}

// rollupRow names one row of a rollup table: its table, key columns and
// their values.
type rollupRow struct {
	table string
	cols  []string
	vals  []any
}

func globalRow(k globalKey) rollupRow {
	return rollupRow{table: "clinical_rollup", cols: []string{"day", "type", "priority_rank", "provider_id"},
		vals: []any{k.day, string(k.key.typ), k.key.rank, k.key.provider}}
}

func patientRow(k patientKey) rollupRow {
	return rollupRow{table: "clinical_rollup_patients", cols: []string{"patient_id", "day"}, vals: []any{k.patient, k.day}}
}

func (r rollupRow) where() string {
	var b strings.Builder
	for i, c := range r.cols {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(c + " = $" + strconv.Itoa(i+1))
	}
	return b.String()
}

// applyRow adds a delta to one row: read it locked, add, write it back
// (or delete it when it empties). A row not there yet is inserted; on
// PostgreSQL another transaction may insert it first, and then it is read
// and updated like any other.
func applyRow(ctx context.Context, tx store.Tx, r rollupRow, delta *cellset) error {
	for range 2 {
		var blob []byte
		err := tx.QueryRow(ctx, `SELECT cells FROM `+r.table+` WHERE `+r.where()+tx.Dialect().ForUpdate(), r.vals...).Scan(&blob)
		switch {
		case err == nil:
			cs, err := decodeCellset(blob)
			if err != nil {
				return err
			}
			for _, e := range *delta {
				cs.add(e.key, &e.c, 1)
			}
			if len(cs) == 0 {
				_, err = tx.Exec(ctx, `DELETE FROM `+r.table+` WHERE `+r.where(), r.vals...)
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE `+r.table+` SET cells = $`+strconv.Itoa(len(r.vals)+1)+` WHERE `+r.where(),
				append(slices.Clone(r.vals), encodeCellset(cs))...)
			return err
		case !errors.Is(err, store.ErrNoRows):
			return err
		}
		marks := make([]string, len(r.cols)+1)
		for i := range marks {
			marks[i] = "$" + strconv.Itoa(i+1)
		}
		n, err := tx.Exec(ctx, `INSERT INTO `+r.table+` (`+strings.Join(r.cols, ", ")+`, cells) VALUES (`+strings.Join(marks, ", ")+`)
			ON CONFLICT DO NOTHING`, append(slices.Clone(r.vals), encodeCellset(*delta))...)
		if err != nil || n == 1 {
			return err
		}
	}
	return fmt.Errorf("clinical rollup: row of %s inserted and removed concurrently", r.table)
}
