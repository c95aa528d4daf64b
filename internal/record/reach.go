package record

import (
	"context"
	"slices"

	"github.com/careflow/careflow/internal/store"
)

// Reach is the part of one type's records a caller may see, by patient
// compartment: Every record, or the union of the records of NoPatient,
// of AllPatients but Except, and of Patients. The zero Reach is nothing.
// It is store.Reach, the shape the workflow engine's lists are confined
// by too; auth.Reach converts to it.
type Reach = store.Reach

// Reacher is a Guard that can say, before a query runs, which records of
// a type its caller may see. Every query that lists records across
// patients is then confined to that reach in SQL: a search (its matches,
// its total and _summary=count, its pages), its _include and _revinclude,
// a type history, and the criteria of conditional interactions. So the
// count a caller gets, and whether a next page exists, say nothing about
// records out of reach; the records returned are still passed to Allow.
type Reacher interface {
	Guard
	// Reach is what a search, an include or a type history of typ may
	// return.
	Reach(ctx context.Context, typ string) (Reach, error)
	// MatchReach is what the criteria of a conditional create, update,
	// delete or reference may match of typ.
	MatchReach(ctx context.Context, typ string) (Reach, error)
}

// listing names what a confined query reads: the table with its alias,
// its patient_id column, and the index on (patient_id, type, ...) that
// SQLite is told to use when the reach is a list of patients.
type listing struct {
	table, col, index string
}

var (
	listResources = listing{"resources r", "r.patient_id", "resources_by_patient"}
	listHistory   = listing{"resource_history", "patient_id", "resource_history_by_patient"}
	// listIncluded reads records by id (the include's targets): the ids
	// drive the query, the patient condition only filters.
	listIncluded = listing{"resources r", "r.patient_id", ""}
)

// confined is a query's FROM clause and WHERE condition over its
// arguments, confined to a reach.
type confined struct {
	from, where string
	args        []any
	// lists is set when args bind a patient list.
	lists bool
}

// queryArgs are the arguments to run the query with: a query binding a
// list is planned for each execution (store.Dialect.PlanEach).
func (c confined) queryArgs(d store.Dialect) []any {
	if c.lists {
		return d.PlanEach(c.args)
	}
	return c.args
}

// confine returns the query over the listing's table with where (over
// args) and the condition that the listing's patient is within g's reach
// of typ, when g is a Reacher; match picks MatchReach. args is copied,
// never appended to in place.
//
// When the reach is a list of patients (a clinician's compartment), the
// work is bounded by those patients' records, so on SQLite the query is
// told to start from the patient index: without statistics (careflow does
// not ANALYZE) SQLite's planner prefers the primary key's order for
// ORDER BY id and would read every record of the type, filtering, to fill
// a page for a clinician with a few patients. PostgreSQL's planner has
// its statistics and chooses the patient index itself.
func (s *Service) confine(ctx context.Context, g Guard, typ string, l listing, match bool, where string, args []any) (confined, error) {
	c := confined{from: l.table, where: where, args: slices.Clip(args)}
	rc, ok := g.(Reacher)
	if !ok {
		return c, nil
	}
	var r Reach
	var err error
	if match {
		r, err = rc.MatchReach(ctx, typ)
	} else {
		r, err = rc.Reach(ctx, typ)
	}
	if err != nil {
		return confined{}, err
	}
	d := s.db.Dialect()
	n := len(c.args)
	if cond := d.ReachCondition(l.col, r, &c.args); cond != "" {
		c.where += " AND " + cond
	}
	c.lists = len(c.args) > n
	if d == store.SQLite && l.index != "" && r.OnlyPatients() {
		c.from += " INDEXED BY " + l.index
	}
	return c, nil
}
