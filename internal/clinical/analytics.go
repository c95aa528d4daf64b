package clinical

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// AnalyticsFilter is GET /analytics: a range of days of creation (UTC; a
// time stands for its day; from and to inclusive; default the 30 days
// ending today, at most 366) and optional type, priority and provider.
type AnalyticsFilter struct {
	From, To time.Time
	Type     WorkflowType
	Priority Priority
	Provider string
}

// Analytics is the work of a range of days, over the workflows the caller
// may reach: counts, times and waits; ids and codes only. It is read from
// the rollup (rollup.go): durations are within 1 % of their exact values,
// waits and overdue steps are as of the minute.
type Analytics struct {
	// From and To are the range's first and last days (UTC, YYYY-MM-DD).
	From string `json:"from"`
	To   string `json:"to"`
	// Total is the number of workflows created in the range.
	Total    int            `json:"total"`
	ByStatus map[Status]int `json:"by_status"`
	// TimeToComplete is over the completed workflows: creation to
	// completion.
	TimeToComplete Durations   `json:"time_to_complete"`
	ByType         []Breakdown `json:"by_type"`
	ByPriority     []Breakdown `json:"by_priority"`
	ByProvider     []Breakdown `json:"by_provider"`
	// LongestWaits are the steps where work waits longest before someone
	// starts it (creation to start; a step of an active workflow still
	// waiting counts until now), the ten longest medians.
	LongestWaits []StepWait `json:"longest_waits"`
	// Overdue are unfinished steps of active workflows past their due time.
	Overdue []Overdue `json:"overdue"`
	// PerDay is the throughput per day (UTC): the range's workflows
	// created that day, and completed that day.
	PerDay []Day `json:"per_day"`
}

// Durations summarises durations in minutes.
type Durations struct {
	Count         int     `json:"count"`
	MedianMinutes float64 `json:"median_minutes"`
	P90Minutes    float64 `json:"p90_minutes"`
}

// Breakdown is one group's counts and time to complete.
type Breakdown struct {
	Key            string         `json:"key"`
	Total          int            `json:"total"`
	ByStatus       map[Status]int `json:"by_status"`
	TimeToComplete Durations      `json:"time_to_complete"`
}

// StepWait is how long one kind of step waits to be started.
type StepWait struct {
	Code string    `json:"code"`
	Role string    `json:"role"`
	Wait Durations `json:"wait"`
}

// Overdue counts overdue steps of one kind.
type Overdue struct {
	Code  string `json:"code"`
	Role  string `json:"role"`
	Count int    `json:"count"`
}

// Day is one day's throughput.
type Day struct {
	Day       string `json:"day"`
	Created   int    `json:"created"`
	Completed int    `json:"completed"`
}

// Analytics computes the analytics of a range (see Analytics) from the
// rollup's days: a caller who reaches every patient reads the days' cells
// by type, priority and provider; one confined to a care team reads the
// team's patients' days; patients excepted from a reach are taken away.
func (s *Service) Analytics(ctx context.Context, g Guard, af AnalyticsFilter) (*Analytics, error) {
	defer s.metrics.time("analytics")()
	now := s.clock()
	first, last, err := analyticsDays(af, now)
	if err != nil {
		return nil, err
	}
	f := Filter{Type: af.Type, Priority: af.Priority, Provider: af.Provider}
	reach, _, err := s.searchReach(ctx, g, &f)
	if err != nil {
		return nil, err
	}
	if err := s.EnsureRollup(ctx); err != nil {
		return nil, err
	}
	agg := newAggregate(f, now)
	switch {
	case reach.Every || (reach.AllPatients && len(reach.Except) == 0):
		err = s.readGlobalCells(ctx, f, first, last, agg, 1)
	case reach.AllPatients:
		if err = s.readGlobalCells(ctx, f, first, last, agg, 1); err == nil {
			err = s.readPatientCells(ctx, reach.Except, first, last, agg, -1)
		}
	case len(reach.Patients) > 0:
		err = s.readPatientCells(ctx, reach.Patients, first, last, agg, 1)
	}
	if err != nil {
		return nil, err
	}
	out := agg.result()
	out.From, out.To = dayTime(first).Format(time.DateOnly), dayTime(last).Format(time.DateOnly)
	return out, nil
}

// analyticsDays is a filter's range as Unix days, first and last
// inclusive.
func analyticsDays(af AnalyticsFilter, now time.Time) (int64, int64, error) {
	last := unixDay(now)
	if !af.To.IsZero() {
		last = unixDay(af.To.UTC())
	}
	first := last - 29
	if !af.From.IsZero() {
		first = unixDay(af.From.UTC())
	}
	if first > last {
		return 0, 0, errs.E(errs.Invalid, "must be the same day as from or later").InField("to")
	}
	if last-first >= 366 {
		return 0, 0, errs.E(errs.Invalid, "a range is at most 366 days").InField("from")
	}
	return first, last, nil
}

// readGlobalCells adds sign times the cells of every patient's workflows in
// the days to agg, narrowed in SQL by the filter's type, priority and
// provider.
func (s *Service) readGlobalCells(ctx context.Context, f Filter, first, last int64, agg *aggregate, sign int64) error {
	q := &query{}
	q.where = append(q.where, "day >= "+q.bind(first), "day <= "+q.bind(last))
	if f.Type != "" {
		q.where = append(q.where, "type = "+q.bind(string(f.Type)))
	}
	if f.Priority != "" {
		q.where = append(q.where, "priority_rank = "+q.bind(f.Priority.rank()))
	}
	if f.Provider != "" {
		q.where = append(q.where, "provider_id = "+q.bind(f.Provider))
	}
	return s.readCells(ctx, `SELECT day, cells FROM clinical_rollup`+q.sql(), q.args, agg, sign)
}

// readPatientCells adds sign times the cells of the patients' workflows in
// the days to agg.
func (s *Service) readPatientCells(ctx context.Context, patients []string, first, last int64, agg *aggregate, sign int64) error {
	q := &query{}
	d := s.cfg.DB.Dialect()
	q.where = append(q.where, d.InList("patient_id", q.bind(d.ListArg(patients))), "day >= "+q.bind(first), "day <= "+q.bind(last))
	return s.readCells(ctx, `SELECT day, cells FROM clinical_rollup_patients`+q.sql(), d.PlanEach(q.args), agg, sign)
}

func (s *Service) readCells(ctx context.Context, sql string, args []any, agg *aggregate, sign int64) error {
	rows, err := s.cfg.DB.Reader().Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			day  int64
			blob []byte
		)
		if err := rows.Scan(&day, &blob); err != nil {
			return err
		}
		if err := agg.addBlob(day, blob, sign); err != nil {
			return err
		}
	}
	return rows.Err()
}

// aggregate sums cells into the analytics: histograms by group, waits by
// step, overdue counts by step, throughput by day. It reads each stored
// cellset in place (addBlob), without building its cells, and its
// histograms are dense (a count per bucket): a range of thousands of cells
// costs what their bytes do.
type aggregate struct {
	f Filter
	// nowMinute: a step is overdue once the minute its due time rounds up
	// to has begun.
	nowMinute, nowUnix int64
	status, ttc        hist
	byType, byProvider map[string]*group
	byPriority         [3]group
	created, completed map[int64]int64
	steps              map[string]*stepAgg
}

type group struct {
	status, ttc hist
}

// stepAgg is one kind of step's waits and overdue count.
type stepAgg struct {
	code, role string
	wait       hist
	overdue    int64
}

// hist is a dense histogram: counts by bucket (or status index).
type hist []int64

func (h *hist) addOne(k, n int64) {
	if k < 0 || k > maxBucket {
		return
	}
	if int(k) >= len(*h) {
		*h = append(*h, make(hist, int(k)+1-len(*h))...)
	}
	(*h)[k] += n
}

// addEach adds n at k to each histogram (the total's and its groups').
func addEach(k, n int64, hs ...*hist) {
	for _, h := range hs {
		h.addOne(k, n)
	}
}

func newAggregate(f Filter, now time.Time) *aggregate {
	return &aggregate{f: f, nowMinute: now.Unix() / 60, nowUnix: now.Unix(), byType: map[string]*group{}, byProvider: map[string]*group{},
		created: map[int64]int64{}, completed: map[int64]int64{}, steps: map[string]*stepAgg{}}
}

// addBlob adds sign times a stored cellset of a day (its entries the filter
// selects).
func (a *aggregate) addBlob(day int64, blob []byte, sign int64) error {
	if len(blob) == 0 || blob[0] != cellsetVersion {
		return errCellset
	}
	d := &decoder{b: blob[1:]}
	for range d.count() {
		typ, rank, provider := d.bytes(), d.varint(), d.bytes()
		if d.err != nil {
			break
		}
		if (a.f.Type != "" && string(typ) != string(a.f.Type)) || (a.f.Priority != "" && rank != int64(a.f.Priority.rank())) ||
			(a.f.Provider != "" && string(provider) != a.f.Provider) {
			d.skipCell()
			continue
		}
		gt := a.byType[string(typ)]
		if gt == nil {
			gt = &group{}
			a.byType[string(typ)] = gt
		}
		gp := a.byProvider[string(provider)]
		if gp == nil {
			gp = &group{}
			a.byProvider[string(provider)] = gp
		}
		gr := &a.byPriority[min(max(rank, 0), 2)]
		for range d.count() {
			k, n := d.pair()
			addEach(k, sign*n, &a.status, &gt.status, &gp.status, &gr.status)
			a.created[day] += sign * n
		}
		for range d.count() {
			k, n := d.pair()
			addEach(k, sign*n, &a.ttc, &gt.ttc, &gp.ttc, &gr.ttc)
		}
		for range d.count() {
			k, n := d.pair()
			a.completed[k] += sign * n
		}
		for range d.count() {
			from := len(blob) - len(d.b)
			code, role := d.bytes(), d.bytes()
			if d.err != nil {
				break
			}
			key := blob[from : len(blob)-len(d.b)]
			st := a.steps[string(key)]
			if st == nil {
				st = &stepAgg{code: string(code), role: string(role)}
				a.steps[string(key)] = st
			}
			for range d.count() {
				k, n := d.pair()
				st.wait.addOne(k, sign*n)
			}
			// Still waiting: from its creation (minute k) until now,
			// rounded to a tenth of a minute (6 s).
			for range d.count() {
				k, n := d.pair()
				st.wait.addOne(bucketOfTenths((a.nowUnix-k*60+3)/6), sign*n)
			}
			for range d.count() {
				k, n := d.pair()
				if k <= a.nowMinute {
					st.overdue += sign * n
				}
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errCellset
	}
	return d.err
}

func (a *aggregate) result() *Analytics {
	out := &Analytics{ByType: []Breakdown{}, ByPriority: []Breakdown{}, ByProvider: []Breakdown{},
		LongestWaits: []StepWait{}, Overdue: []Overdue{}, PerDay: []Day{}}
	out.ByStatus, out.Total = statusCounts(a.status)
	out.TimeToComplete = summarise(a.ttc)
	breakdown := func(key string, gr *group) (Breakdown, bool) {
		b := Breakdown{Key: key, TimeToComplete: summarise(gr.ttc)}
		b.ByStatus, b.Total = statusCounts(gr.status)
		return b, b.Total > 0
	}
	for k, gr := range a.byType {
		if b, ok := breakdown(k, gr); ok {
			out.ByType = append(out.ByType, b)
		}
	}
	for r := range a.byPriority {
		if b, ok := breakdown(string(priorityOfRank(int64(r))), &a.byPriority[r]); ok {
			out.ByPriority = append(out.ByPriority, b)
		}
	}
	for k, gr := range a.byProvider {
		if b, ok := breakdown("Practitioner/"+k, gr); ok {
			out.ByProvider = append(out.ByProvider, b)
		}
	}
	for _, l := range [][]Breakdown{out.ByType, out.ByPriority, out.ByProvider} {
		slices.SortFunc(l, func(x, y Breakdown) int { return strings.Compare(x.Key, y.Key) })
	}
	days := map[int64]*Day{}
	day := func(d int64) *Day {
		if days[d] == nil {
			days[d] = &Day{Day: dayTime(d).Format(time.DateOnly)}
		}
		return days[d]
	}
	for d, n := range a.created {
		if n != 0 {
			day(d).Created = int(n)
		}
	}
	for d, n := range a.completed {
		if n != 0 {
			day(d).Completed = int(n)
		}
	}
	for _, d := range days {
		out.PerDay = append(out.PerDay, *d)
	}
	slices.SortFunc(out.PerDay, func(x, y Day) int { return strings.Compare(x.Day, y.Day) })
	for _, st := range a.steps {
		if d := summarise(st.wait); d.Count > 0 {
			out.LongestWaits = append(out.LongestWaits, StepWait{Code: st.code, Role: st.role, Wait: d})
		}
		if st.overdue > 0 {
			out.Overdue = append(out.Overdue, Overdue{Code: st.code, Role: st.role, Count: int(st.overdue)})
		}
	}
	slices.SortFunc(out.LongestWaits, func(x, y StepWait) int {
		if c := cmp.Compare(y.Wait.MedianMinutes, x.Wait.MedianMinutes); c != 0 {
			return c
		}
		return strings.Compare(x.Code+" "+x.Role, y.Code+" "+y.Role)
	})
	if len(out.LongestWaits) > 10 {
		out.LongestWaits = out.LongestWaits[:10]
	}
	slices.SortFunc(out.Overdue, func(x, y Overdue) int {
		if x.Count != y.Count {
			return y.Count - x.Count
		}
		return strings.Compare(x.Code+" "+x.Role, y.Code+" "+y.Role)
	})
	return out
}

// statusCounts are a status histogram's counts by status, and their sum.
func statusCounts(h hist) (map[Status]int, int) {
	m, total := map[Status]int{}, 0
	for i, n := range h {
		if i < len(statusOrder) && n != 0 {
			m[statusOrder[i]] = int(n)
			total += int(n)
		}
	}
	return m, total
}

// summarise gives the count, median and 90th percentile (nearest rank) of
// a histogram of durations, each a bucket's value in minutes.
func summarise(h hist) Durations {
	var n int64
	for _, c := range h {
		n += c
	}
	if n <= 0 {
		return Durations{}
	}
	rank := func(q float64) float64 {
		want := int64(math.Ceil(q * float64(n)))
		var seen int64
		for b, c := range h {
			if seen += c; seen >= want {
				return bucketMinutes(int64(b))
			}
		}
		return bucketMinutes(int64(len(h) - 1))
	}
	return Durations{Count: int(n), MedianMinutes: rank(0.5), P90Minutes: rank(0.9)}
}
