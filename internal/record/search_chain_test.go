package record

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// Chains and reverse chains answer through the index, on each backend:
// Observation?subject:Patient.family= and ?patient.family= (one target)
// find the Observations of the Patients so named (a PHI name, matched by
// its blind index); Patient?_has:Observation:patient:code= finds the
// Patients with such an Observation; an empty inner match finds nothing;
// two links, an ambiguous target, a type the reference does not point to,
// and chains in conditional criteria are refused naming the parameter.
func TestChainsAndHas(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newService(t, db)
		pa := mustCreate(t, s, "Patient", `{"resourceType":"Patient","name":[{"family":"Haddad","given":["Omar"]}]}`).ID
		pb := mustCreate(t, s, "Patient", `{"resourceType":"Patient","name":[{"family":"Nasser","given":["Lina"]}]}`).ID
		obs := func(p, code string) string {
			return mustCreate(t, s, "Observation", `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"`+code+`"}]},"subject":{"reference":"Patient/`+p+`"}}`).ID
		}
		oa1, oa2, ob := obs(pa, "8480-6"), obs(pa, "8462-4"), obs(pb, "8462-4")
		for _, c := range []struct {
			typ, query string
			want       []string
		}{
			{"Observation", "subject:Patient.family=haddad", []string{oa1, oa2}},
			{"Observation", "patient.family=Nasser", []string{ob}},
			{"Observation", "patient.name=lin&code=http://loinc.org|8462-4", []string{ob}},
			{"Observation", "patient.family=Nobody", nil},
			{"Patient", "_has:Observation:patient:code=8480-6", []string{pa}},
			{"Patient", "_has:Observation:patient:code=http://loinc.org|8462-4", []string{pa, pb}},
			{"Patient", "_has:Observation:patient:code=0000-0", nil},
		} {
			got, err := searchIDs(t, s, c.typ, c.query)
			slices.Sort(got)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("%s?%s = %v, %v; want %v", c.typ, c.query, got, err, want)
			}
		}
		for _, c := range []struct{ typ, key, value string }{
			{"Observation", "patient.organization.name", "x"},
			{"Observation", "subject.family", "x"}, // subject points to several types
			{"Observation", "subject:Organization.name", "x"},
			{"Observation", "status.name", "x"},
			{"Observation", "patient.nothing", "x"},
			{"Patient", "_has:Observation:patient", "x"},
			{"Patient", "_has:Observation:code:code", "x"},
			{"Patient", "_has:Observation:patient:_has:Observation:patient:code", "x"},
		} {
			_, err := searchIDs(t, s, c.typ, url.Values{c.key: {c.value}}.Encode())
			var e *errs.Error
			if !errs.Is(err, errs.Invalid) || !asErr(err, &e) || e.Field != c.key {
				t.Errorf("%s?%s: %v, want invalid naming it", c.typ, c.key, err)
			}
		}
		_, err := s.matchIDs(context.Background(), db.Reader(), nil, "Observation", "patient.family=haddad", 2)
		if !errs.Is(err, errs.Invalid) {
			t.Errorf("a chain in conditional criteria: %v, want invalid", err)
		}
	})
}

func asErr(err error, e **errs.Error) bool { return errors.As(err, e) }
