package store

import (
	"strconv"
	"strings"
)

// Reach is the part of a set of records a caller may see, by the patient
// each record belongs to: Every record, or the union of the records of
// NoPatient (a NULL patient column), of AllPatients but Except, and of
// Patients. The zero Reach is nothing. It has the shape of auth.Reach,
// which converts to it; the FHIR record and the workflow engine confine
// their listings with it, so a page, a total and a next cursor count only
// what the caller may see.
type Reach struct {
	Every       bool
	NoPatient   bool
	AllPatients bool
	Except      []string
	Patients    []string
}

// OnlyPatients reports whether r is a list of patients and nothing else (a
// clinician's compartment): a query whose work is bounded by those
// patients' rows, which SQLite may need to be told to start from.
func (r Reach) OnlyPatients() bool {
	return !r.Every && !r.NoPatient && !r.AllPatients && len(r.Patients) > 0
}

// ReachCondition is the condition that col (a patient id column, NULL for a
// row of no patient) is within r, binding its lists after args; "" for a
// reach of every row. A patient list is one parameter (InList), so the
// statement does not grow with a care team; one patient is a plain
// equality. A query that binds a list is run with PlanEach's arguments.
func (d Dialect) ReachCondition(col string, r Reach, args *[]any) string {
	if r.Every {
		return ""
	}
	bind := func(v any) string {
		*args = append(*args, v)
		return "$" + strconv.Itoa(len(*args))
	}
	// IS NOT NULL states what the partial patient indexes require.
	var ors []string
	if r.NoPatient {
		ors = append(ors, col+" IS NULL")
	}
	switch {
	case r.AllPatients && len(r.Except) == 0:
		ors = append(ors, col+" IS NOT NULL")
	case r.AllPatients:
		ors = append(ors, "("+col+" IS NOT NULL AND "+d.NotInList(col, bind(d.ListArg(r.Except)))+")")
	case len(r.Patients) == 1:
		ors = append(ors, "("+col+" IS NOT NULL AND "+col+" = "+bind(r.Patients[0])+")")
	case len(r.Patients) > 1:
		ors = append(ors, "("+col+" IS NOT NULL AND "+d.InList(col, bind(d.ListArg(r.Patients)))+")")
	}
	switch len(ors) {
	case 0:
		return "1 = 0"
	case 1:
		return ors[0]
	}
	return "(" + strings.Join(ors, " OR ") + ")"
}
