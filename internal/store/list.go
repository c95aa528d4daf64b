package store

import (
	"encoding/json"

	"github.com/jackc/pgx/v5"
)

// A list of strings bound as one parameter, for "col is one of these": the
// access policy confines a search to a caller's patients with such a list,
// which may hold thousands of ids. One parameter keeps the statement the
// same size whatever the list's length (SQLite allows 32,766 parameters,
// PostgreSQL 65,535), and each dialect turns it into a set its planner
// joins by index: = ANY of a text[] on PostgreSQL, json_each of a JSON
// array on SQLite. This is the one place the two differ.

// InList is the condition that col is one of the strings bound at marker
// ($n), which must be given ListArg's value.
func (d Dialect) InList(col, marker string) string {
	if d == Postgres {
		return col + " = ANY(" + marker + "::text[])"
	}
	return col + " IN (SELECT value FROM json_each(" + marker + "))"
}

// NotInList is the condition that col is none of the strings bound at
// marker. Like NOT IN, it is not true for a NULL col. On PostgreSQL it is
// NOT IN a subquery, which the executor hashes once: <> ALL of a
// parameter compares every row with every element (a list of 500 made a
// count of 10,000 rows 25 times slower).
func (d Dialect) NotInList(col, marker string) string {
	if d == Postgres {
		return col + " NOT IN (SELECT unnest(" + marker + "::text[]))"
	}
	return col + " NOT IN (SELECT value FROM json_each(" + marker + "))"
}

// ListArg is the parameter value of a list for InList and NotInList.
func (d Dialect) ListArg(vals []string) any {
	if vals == nil {
		vals = []string{}
	}
	if d == Postgres {
		return vals
	}
	b, _ := json.Marshal(vals) // a []string always marshals
	return string(b)
}

// PlanEach returns the arguments of a query that binds a list, so that
// PostgreSQL plans it for each execution, knowing the list: under pgx's
// statement cache a statement is prepared once and, after a few runs,
// PostgreSQL settles on a generic plan that cannot know whether the list
// holds 2 ids or 2,000, and that filtered every matching row against every
// element (a care team's search of 10,000 patients took 30 ms instead of
// 0.3). The statement's description is still cached, so this costs no
// extra round trip. SQLite plans without looking at values: unchanged.
func (d Dialect) PlanEach(args []any) []any {
	if d == Postgres {
		return append([]any{pgx.QueryExecModeCacheDescribe}, args...)
	}
	return args
}
