package clinical

import (
	"context"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// AnalyticsFilter is GET /analytics: a date range of creation (default the
// last 30 days, at most 366) and optional type, priority and provider.
type AnalyticsFilter struct {
	From, To time.Time
	Type     WorkflowType
	Priority Priority
	Provider string
}

// Analytics is the work of a date range, over the workflows the caller may
// reach: counts, times and waits; ids and codes only.
type Analytics struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
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
	// starts it (creation to start; still waiting counts until now), the
	// ten longest medians.
	LongestWaits []StepWait `json:"longest_waits"`
	// Overdue are unfinished steps of active workflows past their due time.
	Overdue []Overdue `json:"overdue"`
	// PerDay is the throughput per day (UTC): workflows created and
	// completed.
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

// Analytics computes the analytics of a range (see Analytics).
func (s *Service) Analytics(ctx context.Context, g Guard, af AnalyticsFilter) (*Analytics, error) {
	defer s.metrics.time("analytics")()
	now := s.clock()
	if af.To.IsZero() {
		af.To = now
	}
	if af.From.IsZero() {
		af.From = af.To.AddDate(0, 0, -30)
	}
	if !af.From.Before(af.To) {
		return nil, errs.E(errs.Invalid, "must be after from").InField("to")
	}
	if af.To.Sub(af.From) > 366*24*time.Hour {
		return nil, errs.E(errs.Invalid, "a range is at most 366 days").InField("from")
	}
	f := Filter{Type: af.Type, Priority: af.Priority, Provider: af.Provider, CreatedFrom: af.From, CreatedTo: af.To}
	q, _, err := s.confined(ctx, g, &f, "w.")
	if err != nil {
		return nil, err
	}
	out := &Analytics{From: af.From.UTC(), To: af.To.UTC(), ByStatus: map[Status]int{}}
	type group struct {
		b     *Breakdown
		times []float64
	}
	groups := map[string]map[string]*group{"type": {}, "priority": {}, "provider": {}}
	add := func(dim, key string, st Status, minutes float64, done bool) {
		gr, ok := groups[dim][key]
		if !ok {
			gr = &group{b: &Breakdown{Key: key, ByStatus: map[Status]int{}}}
			groups[dim][key] = gr
		}
		gr.b.Total++
		gr.b.ByStatus[st]++
		if done {
			gr.times = append(gr.times, minutes)
		}
	}
	days := map[string]*Day{}
	day := func(t time.Time) *Day {
		k := t.UTC().Format(time.DateOnly)
		d, ok := days[k]
		if !ok {
			d = &Day{Day: k}
			days[k] = d
		}
		return d
	}
	var all []float64
	rows, err := s.cfg.DB.Reader().Query(ctx, `SELECT w.type, w.priority, w.provider_id, w.status, w.created_at, w.completed_at
		FROM clinical_workflows w`+q.sql(), q.args...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var (
			typ, prio, provider string
			st                  Status
			created             time.Time
			completed           *time.Time
		)
		if err := rows.Scan(&typ, &prio, &provider, &st, &created, &completed); err != nil {
			rows.Close()
			return nil, err
		}
		out.Total++
		out.ByStatus[st]++
		day(created).Created++
		done := st == StatusCompleted && completed != nil
		minutes := 0.0
		if done {
			minutes = completed.Sub(created).Minutes()
			all = append(all, minutes)
			day(*completed).Completed++
		}
		add("type", typ, st, minutes, done)
		add("priority", prio, st, minutes, done)
		add("provider", "Practitioner/"+provider, st, minutes, done)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out.TimeToComplete = summarise(all)
	for dim, dst := range map[string]*[]Breakdown{"type": &out.ByType, "priority": &out.ByPriority, "provider": &out.ByProvider} {
		*dst = []Breakdown{}
		for _, gr := range groups[dim] {
			gr.b.TimeToComplete = summarise(gr.times)
			*dst = append(*dst, *gr.b)
		}
		sort.Slice(*dst, func(i, j int) bool { return (*dst)[i].Key < (*dst)[j].Key })
	}
	out.PerDay = make([]Day, 0, len(days))
	for _, d := range days {
		out.PerDay = append(out.PerDay, *d)
	}
	sort.Slice(out.PerDay, func(i, j int) bool { return out.PerDay[i].Day < out.PerDay[j].Day })
	if err := s.stepAnalytics(ctx, q, now, out); err != nil {
		return nil, err
	}
	return out, nil
}

// stepAnalytics adds the waits and the overdue steps of the workflows q
// selects.
func (s *Service) stepAnalytics(ctx context.Context, q *query, now time.Time, out *Analytics) error {
	type key struct{ code, role string }
	waits := map[key][]float64{}
	overdue := map[key]int{}
	rows, err := s.cfg.DB.Reader().Query(ctx, `SELECT s.code, s.role, s.status, s.created_at, s.started_at, s.finished_at, s.due_at, w.status
		FROM clinical_steps s JOIN clinical_workflows w ON w.id = s.workflow_id`+q.sql(), q.args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			k                      key
			st                     StepStatus
			ws                     Status
			created                time.Time
			started, finished, due *time.Time
		)
		if err := rows.Scan(&k.code, &k.role, &st, &created, &started, &finished, &due, &ws); err != nil {
			return err
		}
		switch {
		case started != nil:
			waits[k] = append(waits[k], started.Sub(created).Minutes())
		case st == StepPending && ws == StatusActive:
			waits[k] = append(waits[k], now.Sub(created).Minutes())
		}
		if ws == StatusActive && !st.Final() && due != nil && due.Before(now) {
			overdue[k]++
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	out.LongestWaits = []StepWait{}
	for k, v := range waits {
		out.LongestWaits = append(out.LongestWaits, StepWait{Code: k.code, Role: k.role, Wait: summarise(v)})
	}
	sort.Slice(out.LongestWaits, func(i, j int) bool {
		a, b := out.LongestWaits[i], out.LongestWaits[j]
		if a.Wait.MedianMinutes != b.Wait.MedianMinutes {
			return a.Wait.MedianMinutes > b.Wait.MedianMinutes
		}
		return a.Code < b.Code
	})
	if len(out.LongestWaits) > 10 {
		out.LongestWaits = out.LongestWaits[:10]
	}
	out.Overdue = []Overdue{}
	for k, n := range overdue {
		out.Overdue = append(out.Overdue, Overdue{Code: k.code, Role: k.role, Count: n})
	}
	sort.Slice(out.Overdue, func(i, j int) bool {
		if out.Overdue[i].Count != out.Overdue[j].Count {
			return out.Overdue[i].Count > out.Overdue[j].Count
		}
		return out.Overdue[i].Code < out.Overdue[j].Code
	})
	return nil
}

// summarise gives the count, median and 90th percentile (nearest rank) of
// minutes, rounded to a tenth.
func summarise(v []float64) Durations {
	if len(v) == 0 {
		return Durations{}
	}
	v = slices.Clone(v)
	slices.Sort(v)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(v)))) - 1
		return math.Round(v[max(i, 0)]*10) / 10
	}
	return Durations{Count: len(v), MedianMinutes: rank(0.5), P90Minutes: rank(0.9)}
}
