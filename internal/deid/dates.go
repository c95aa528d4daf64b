package deid

import (
	"regexp"
	"strconv"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// Safe Harbor keeps the year of a date about the person and drops the rest;
// for a person aged 90 or over even the year of birth goes, and the age is
// one group, "90 or older". The functions below are the only ways the
// export turns a date or an age into output.

// OldestAge is the first age that Safe Harbor no longer lets an export
// state: from it on, every age is Over89.
const OldestAge = 90

// Over89 is the one group every age from 90 up becomes.
const Over89 = "90+"

// Year returns the year of t in t's own location as four digits, or "" for
// the zero time.
func Year(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return yearString(t.Year())
}

func yearString(y int) string {
	s := strconv.Itoa(y)
	for len(s) < 4 {
		s = "0" + s
	}
	return s
}

// fhirDateTime accepts FHIR R4's date, dateTime and instant: a year, a year
// and month, a date, or a date with a time and (for a time with hours) an
// optional zone. Seconds are optional here, more lenient than R4, since the
// year is all that is kept.
var fhirDateTime = regexp.MustCompile(`^(\d{4})(?:-(?:0[1-9]|1[0-2])(?:-(?:0[1-9]|[12]\d|3[01])(?:T(?:[01]\d|2[0-3]):[0-5]\d(?::(?:[0-5]\d|60)(?:\.\d{1,9})?)?(?:Z|[+-](?:0\d|1[0-4]):[0-5]\d)?)?)?)?$`)

// YearOf returns the year of a FHIR date, dateTime or instant: "2024",
// "2024-03", "2024-03-05" and "2024-03-05T10:00:00+02:00" all give "2024".
// The year is the one written, in the value's own zone: a New Year's Eve
// admission in Cairo stays in its year even where UTC has moved on. Anything
// else is an errs.Invalid that does not repeat the value.
func YearOf(fhirDate string) (string, error) {
	m := fhirDateTime.FindStringSubmatch(fhirDate)
	if m == nil || m[1] == "0000" {
		return "", errs.E(errs.Invalid, "not a FHIR date or dateTime")
	}
	return m[1], nil
}

// Age returns the age in completed years on ref of a person born on birth,
// each read as a calendar date in its own location, or -1 when either is the
// zero time or birth is after ref. A person born on 29 February has their
// birthday on 1 March in other years.
func Age(birth, ref time.Time) int {
	if birth.IsZero() || ref.IsZero() {
		return -1
	}
	by, bm, bd := birth.Date()
	ry, rm, rd := ref.Date()
	age := ry - by
	if rm < bm || (rm == bm && rd < bd) {
		age--
	}
	if age < 0 {
		return -1
	}
	return age
}

// AgeText returns an age as the export writes it: the number below 90,
// Over89 from 90 on, and "" for an unknown (negative) age.
func AgeText(age int) string {
	switch {
	case age < 0:
		return ""
	case age >= OldestAge:
		return Over89
	}
	return strconv.Itoa(age)
}

// AgeGroup returns the five-year group of the age on ref of a person born on
// birth: "0-4", "5-9", …, "85-89", and Over89 from 90 on; "" when the age is
// unknown. Five-year groups are coarser than the rule requires; they keep a
// rare age from singling out a patient in a small cohort.
func AgeGroup(birth, ref time.Time) string {
	age := Age(birth, ref)
	switch {
	case age < 0:
		return ""
	case age >= OldestAge:
		return Over89
	}
	low := age - age%5
	return strconv.Itoa(low) + "-" + strconv.Itoa(low+4)
}

// BirthYear returns the year of birth the export may state: the year for a
// person under 90 on ref, and "" for one aged 90 or over (the year would
// tell the age) or of unknown age.
func BirthYear(birth, ref time.Time) string {
	if age := Age(birth, ref); age < 0 || age >= OldestAge {
		return ""
	}
	return Year(birth)
}
