package record

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxOffset bounds _offset (of a search and of a history): a page deeper
// than this costs the database the whole skipped prefix on every request,
// and no client pages that far through a clinical search. A search that
// needs more is to be narrowed (_lastUpdated, a date) or exported.
const MaxOffset = 10000

// pagingValue parses _count or _offset: a whole number from least to
// most, else a 400 naming the parameter. The value is a number, not PHI,
// but it is not echoed either.
func pagingValue(key, value string, least, most int) (int, error) {
	n, err := strconv.Atoi(value)
	if err != nil || n < least || n > most {
		return 0, badParam(key, "%s must be a whole number from %d to %d", key, least, most)
	}
	return n, nil
}

// checkSearchText refuses a search value that is not text: invalid UTF-8
// or a control character (NUL among them) can match nothing that was
// stored, and PostgreSQL rejects it as a text argument, which would turn a
// malformed request into a server error.
func checkSearchText(name, value string) error {
	if !utf8.ValidString(value) || strings.ContainsFunc(value, unicode.IsControl) {
		return badParam(name, "the value of %s is not text (it holds a control character or invalid UTF-8)", name)
	}
	return nil
}

// badID is the error for a value of name that is not a FHIR id. Such a
// value matches nothing; refusing it here also keeps it from being taken
// for a patient's id by the access decision and its audit entry, which
// accept only ids (it was a 503 "the audit log is unavailable").
func badID(name string) error {
	return badParam(name, "the value of %s is not a FHIR id (1 to 64 letters, digits, '-' and '.')", name)
}
