package store

import "testing"

// Which texts a connection keeps prepared: one DML or SELECT statement,
// after any leading comments (River's queries open with "-- name: ...").
func TestWhichStatementsAreKept(t *testing.T) {
	for q, want := range map[string]bool{
		"SELECT 1":                             true,
		"  insert into t values (1);":          true,
		"WITH x AS (SELECT 1) SELECT * FROM x": true,
		"-- name: JobGetAvailable :many\nUPDATE river_job SET state = 'running'": true,
		"/* a */ -- b\n\tDELETE FROM t":                                          true,
		"SELECT 1; SELECT 2":                                                     false,
		"BEGIN":                                                                  false,
		"PRAGMA foreign_keys = ON":                                               false,
		"CREATE TABLE t (a)":                                                     false,
		"-- only a comment":                                                      false,
		"/* unterminated SELECT 1":                                               false,
		"-- name: X\nCREATE INDEX i ON t (a)":                                    false,
	} {
		if got := cacheable(q); got != want {
			t.Errorf("cacheable(%q) = %v, want %v", q, got, want)
		}
	}
}
