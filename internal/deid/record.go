package deid

import (
	"regexp"
	"strconv"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// Format names the JSON format of a Record, and is its "format" member.
// A change that adds a member keeps the name; one that changes what a
// member means, or adds a way for an identifier to get out, takes a new one.
const Format = "careflow.deid.v1"

// Kind is a kind of identifier the scrubber removes. Its placeholder in
// scrubbed text is "[" + kind + "]", except KindAge, whose number becomes
// Over89.
type Kind string

// The kinds, in the order that decides between two of them found over
// exactly the same text (the first wins).
const (
	KindEmail   Kind = "EMAIL"   // e-mail addresses
	KindURL     Kind = "URL"     // web addresses
	KindIP      Kind = "IP"      // IPv4 and IPv6 addresses
	KindDate    Kind = "DATE"    // any date element but a lone year
	KindPhone   Kind = "PHONE"   // telephone and fax numbers
	KindZIP     Kind = "ZIP"     // postal codes
	KindID      Kind = "ID"      // record, national, insurance, account, licence, device and other numbers
	KindAddress Kind = "ADDRESS" // street addresses, cities and other places smaller than a state
	KindName    Kind = "NAME"    // names of the patient, relatives and others
	KindAge     Kind = "AGE"     // an age over 89, which becomes "90+"
)

var kindOrder = map[Kind]int{
	KindEmail: 0, KindURL: 1, KindIP: 2, KindDate: 3, KindPhone: 4, KindZIP: 5,
	KindID: 6, KindAddress: 7, KindName: 8, KindAge: 9,
}

// Placeholder returns what scrubbed text holds where an identifier of the
// kind was.
func (k Kind) Placeholder() string {
	if k == KindAge {
		return Over89
	}
	return "[" + string(k) + "]"
}

// Report counts what scrubbing removed, per kind: an export can be audited
// (how many names, dates, numbers left each note) without the values, which
// a Report never holds. Its JSON is an object from kind to count, such as
// {"DATE":2,"NAME":3}.
type Report map[Kind]int

// Add adds o's counts to r, which must not be nil.
func (r Report) Add(o Report) {
	for k, n := range o {
		r[k] += n
	}
}

// Total returns how many identifiers the report counts.
func (r Report) Total() int {
	n := 0
	for _, c := range r {
		n += c
	}
	return n
}

// Record is one patient's de-identified record in the research export, in
// the format careflow.deid.v1. Its JSON members, all of them:
//
//	format       always "careflow.deid.v1"
//	patient_key  Pseudonymizer.PatientKey of the patient's id: "p_" and 26
//	             base32 characters, the same for the same patient in every
//	             record of an export (and of every export made with the same
//	             key and purpose), unlinkable to the id without the key
//	sex          FHIR administrative gender: "male", "female", "other" or
//	             "unknown"; absent when not recorded
//	age_group    AgeGroup on the export's reference date: "0-4" … "85-89"
//	             or "90+"; absent when the birth date is unknown
//	birth_year   BirthYear: four digits, absent for "90+" and when unknown
//	years        dates about the patient, by what they date ("admission",
//	             "discharge", "death", "workflow_created"): the year only,
//	             four digits
//	facts        categorical values that identify no one, by name: codes of
//	             closed value sets such as a workflow's type, priority or
//	             status ("type": "discharge"); letters, digits and . _ : -
//	             only, at most 64 characters, so free text cannot hide here
//	codes        clinical codes: {"system": URI, "code": code}, such as ICD-10
//	             diagnoses; a code is never an identifier
//	text         free text by field ("chief_complaint", "notes",
//	             "working_diagnosis"), each scrubbed by the patient's
//	             Scrubber: names, numbers, places, dates and contact details
//	             replaced by [NAME], [ID], [PHONE], [ADDRESS], [ZIP], [DATE],
//	             [EMAIL], [URL], [IP]; ages over 89 written "90+"
//	removed      the Report of all text fields together: placeholders
//	             written, by kind
//
// Member names in years, facts and text are lower-case identifiers
// ([a-z][a-z0-9_]*, at most 64), so no value can ride in a key. Empty
// members are left out, except format, patient_key and removed. Names,
// addresses, telephone numbers, identifiers, full dates, photographs and
// biometrics have no member: they cannot be exported by this format.
type Record struct {
	Format     string            `json:"format"`
	PatientKey string            `json:"patient_key"`
	Sex        string            `json:"sex,omitempty"`
	AgeGroup   string            `json:"age_group,omitempty"`
	BirthYear  string            `json:"birth_year,omitempty"`
	Years      map[string]string `json:"years,omitempty"`
	Facts      map[string]string `json:"facts,omitempty"`
	Codes      []Code            `json:"codes,omitempty"`
	Text       map[string]string `json:"text,omitempty"`
	Removed    Report            `json:"removed"`
}

// Code is a clinical code in a Record.
type Code struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// NewRecord starts a Record for the patient whose Pseudonymizer key is
// patientKey.
func NewRecord(patientKey string) *Record {
	return &Record{Format: Format, PatientKey: patientKey, Removed: Report{}}
}

// SetAge sets the age group and the birth year the format allows for a
// patient born on birth, as of ref (the export's reference date).
func (r *Record) SetAge(birth, ref time.Time) {
	r.AgeGroup = AgeGroup(birth, ref)
	r.BirthYear = BirthYear(birth, ref)
}

// SetYear records the year of t under field; a zero t records nothing.
func (r *Record) SetYear(field string, t time.Time) {
	if y := Year(t); y != "" {
		setIn(&r.Years, field, y)
	}
}

// SetYearOf records the year of a FHIR date or dateTime under field.
func (r *Record) SetYearOf(field, fhirDate string) error {
	y, err := YearOf(fhirDate)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "not a FHIR date or dateTime").InField(field)
	}
	setIn(&r.Years, field, y)
	return nil
}

// SetText scrubs text with the patient's scrubber, stores the result under
// field and adds what was removed to the record's report.
func (r *Record) SetText(s *Scrubber, field, text string) {
	out, rep := s.Scrub(text)
	setIn(&r.Text, field, out)
	if r.Removed == nil {
		r.Removed = Report{}
	}
	r.Removed.Add(rep)
}

// SetFact records a categorical value under field; Validate refuses one that
// is not a code.
func (r *Record) SetFact(field, value string) { setIn(&r.Facts, field, value) }

func setIn(m *map[string]string, k, v string) {
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
}

var (
	fieldName   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	factValue   = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)
	yearValue   = regexp.MustCompile(`^\d{4}$`)
	codeSystem  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:[!-~]{1,200}$`)
	codeValue   = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)
	patientKey  = regexp.MustCompile(`^p_[a-z2-7]{26}$`)
	ageGroups   = map[string]bool{"": true, Over89: true}
	genderCodes = map[string]bool{"": true, "male": true, "female": true, "other": true, "unknown": true}
)

func init() {
	for low := 0; low < OldestAge; low += 5 {
		ageGroups[AgeGroup(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2000+low, 1, 1, 0, 0, 0, 0, time.UTC))] = true
	}
}

// Validate checks that r keeps the format's promises: the shape of every
// member, so that nothing but what the format describes can leave in it. It
// cannot know whether text was scrubbed (SetText does that). Errors are
// errs.Invalid naming the member, never repeating a value.
func (r *Record) Validate() error {
	bad := func(field, msg string) error { return errs.E(errs.Invalid, "%s", msg).InField(field) }
	switch {
	case r.Format != Format:
		return bad("format", "must be "+Format)
	case !patientKey.MatchString(r.PatientKey):
		return bad("patient_key", "must be a pseudonymous patient key")
	case !genderCodes[r.Sex]:
		return bad("sex", "must be an administrative gender code")
	case !ageGroups[r.AgeGroup]:
		return bad("age_group", "must be an age group")
	case r.BirthYear != "" && (!yearValue.MatchString(r.BirthYear) || r.AgeGroup == Over89):
		return bad("birth_year", "must be a year, and absent for ages over 89")
	}
	for _, m := range []struct {
		member string
		values map[string]string
		ok     func(string) bool
	}{
		{"years", r.Years, yearValue.MatchString},
		{"facts", r.Facts, factValue.MatchString},
		{"text", r.Text, func(string) bool { return true }},
	} {
		for k, v := range m.values {
			if !fieldName.MatchString(k) {
				return bad(m.member, "member names must be lower-case identifiers")
			}
			if !m.ok(v) {
				return bad(m.member+"."+k, "is not allowed in "+m.member)
			}
		}
	}
	for i, c := range r.Codes {
		if !codeSystem.MatchString(c.System) || !codeValue.MatchString(c.Code) {
			return bad("codes", "entry "+strconv.Itoa(i)+" is not a system URI and a code")
		}
	}
	return nil
}
