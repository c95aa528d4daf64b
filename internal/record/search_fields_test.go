package record

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// policyElements is an ElementGuard that allows every access and sees
// what the policy shows a role for a purpose: the field half of the real
// policy, without its patient half.
type policyElements struct {
	pol     *auth.Policy
	role    auth.Role
	purpose auth.Purpose
}

func (g policyElements) Allow(context.Context, Access) error { return nil }

func (g policyElements) SeesElement(_ context.Context, typ, element string) bool {
	return g.pol.ElementVisible(g.role, typ, g.purpose, element)
}

// hiding is an ElementGuard that sees every element but the listed
// Type.element ones.
type hiding []string

func (h hiding) Allow(context.Context, Access) error { return nil }

func (h hiding) SeesElement(_ context.Context, typ, element string) bool {
	return !slices.Contains(h, typ+"."+element)
}

// sampleValue is a well-formed search value of a parameter (a PHI date
// token, birthdate, takes a date).
func sampleValue(p *Param) string {
	switch {
	case p.Kind == Date || p.Name == "birthdate":
		return "2024-01-01"
	case p.Kind == Reference:
		return "Practitioner/p1"
	case p.Kind == Number || p.Kind == Quantity:
		return "1"
	case p.Kind == String:
		return "abc"
	}
	return "x"
}

// topLevel is the top-level element a path starts with, read from the
// path text here rather than through paramElements, so that the test does
// not trust the code it checks.
func topLevel(path string) string {
	return strings.FieldsFunc(path, func(r rune) bool { return r == '.' || r == '[' })[0]
}

// visibleOf reports whether every path of p (and of the parameters it
// also matches) starts with an element in fields (nil: all; always
// visible: resourceType, id, meta).
func visibleOf(typ string, p *Param, fields []string) bool {
	if fields == nil {
		return true
	}
	paths := slices.Clone(p.Paths)
	for _, a := range p.Also {
		paths = append(paths, typeParams[typ][a].Paths...)
	}
	for _, path := range paths {
		if el := topLevel(path); !slices.Contains(fields, el) && el != "id" && el != "meta" {
			return false
		}
	}
	return true
}

// For every role and purpose of the default policy, every modelled type
// and every search parameter in params.go: the parameter, a _sort by it
// (where it sorts), an _include of it and a _revinclude of it (where it is
// a reference) are allowed exactly when every element its paths start
// with is visible to the role for the purpose. A parameter added to
// params.go is covered without touching this test.
func TestEveryParameterIsAllowedIffItsElementsAreVisible(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newService(t, db)
		ctx := context.Background()
		pol := auth.DefaultPolicy()
		refused, allowed := 0, 0
		for _, role := range auth.Roles() {
			for _, purpose := range auth.Purposes() {
				g := policyElements{pol: pol, role: role, purpose: purpose}
				for _, typ := range ModelledTypes() {
					fields := pol.VisibleFields(role, typ, purpose)
					for _, p := range ParamsOf(typ) {
						want := visibleOf(typ, p, fields)
						try := func(what string, params url.Values, searched string) {
							t.Helper()
							q, err := s.ParseQuery(searched, params)
							if err != nil {
								t.Fatalf("%s %s?%s: %v", role, searched, params.Encode(), err)
							}
							err = s.checkElements(ctx, g, q)
							if got := err == nil; got != want {
								t.Fatalf("%s for %s, %s of %s.%s: allowed %v, want %v (visible %v): %v", role, purpose, what, typ, p.Name, got, want, fields, err)
							}
							if err != nil {
								refused++
								if !errs.Is(err, errs.NotSupported) {
									t.Fatalf("%s: refusal of kind %s, want not_supported", what, errs.KindOf(err))
								}
							} else {
								allowed++
							}
						}
						try("search", url.Values{p.Name: {sampleValue(p)}}, typ)
						try("missing", url.Values{p.Name + ":missing": {"true"}}, typ)
						if !p.PHI && (p.Kind == Date || p.Kind == String) {
							try("_sort", url.Values{"_sort": {"-" + p.Name}}, typ)
						}
						if p.Kind == Reference {
							try("_include", url.Values{"_include": {typ + ":" + p.Name}}, typ)
							// A _revinclude reads the including type's element,
							// whatever type is searched.
							try("_revinclude", url.Values{"_revinclude": {typ + ":" + p.Name}}, "Organization")
						}
					}
				}
			}
		}
		// The policy has field rules: the test must have seen both answers.
		if refused == 0 || allowed == 0 {
			t.Fatalf("refused %d, allowed %d: the test cannot fail", refused, allowed)
		}
	})
}

// Every way a search reads an element is refused when the element is
// hidden, searches and conditional interactions alike, and nothing runs
// or is written; _include=T:* follows only the visible references.
func TestSearchOverAHiddenElementIsRefused(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newService(t, db)
		ctx := context.Background()
		put := func(typ, id, body string) {
			t.Helper()
			if _, _, err := s.Update(ctx, nil, typ, id, []byte(body), ""); err != nil {
				t.Fatalf("seed %s/%s: %v", typ, id, err)
			}
		}
		put("Patient", "p1", `{"resourceType":"Patient","id":"p1","gender":"female"}`)
		put("Practitioner", "d1", `{"resourceType":"Practitioner","id":"d1"}`)
		put("Encounter", "e1", `{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2024-01-01"},"reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"86406008"}]}]}`)
		put("Condition", "c1", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"asserter":{"reference":"Practitioner/d1"}}`)
		g := hiding{"Encounter.reasonCode", "Encounter.period", "Condition.asserter", "Patient.gender"}

		refusedAs := func(t *testing.T, err error, field string) {
			t.Helper()
			var e *errs.Error
			if !errors.As(err, &e) || e.Kind != errs.NotSupported || e.Field != field {
				t.Fatalf("got %v, want not_supported naming %s", err, field)
			}
			if strings.Contains(e.Message, "86406008") || strings.Contains(e.Message, "d1") {
				t.Fatalf("the refusal echoes the value: %s", e.Message)
			}
		}
		for _, c := range []struct{ typ, query, field string }{
			{"Encounter", "reason-code=http://snomed.info/sct|86406008", "reason-code"},
			{"Encounter", "reason-code=http://snomed.info/sct|00000000", "reason-code"}, // matches nothing: same answer
			{"Encounter", "reason-code:missing=false", "reason-code"},
			{"Encounter", "reason-code:not=x", "reason-code"},
			{"Encounter", "_sort=date", "_sort"},
			{"Encounter", "status=finished&_sort=-date", "_sort"},
			{"Condition", "asserter=Practitioner/d1", "asserter"},
			{"Condition", "_include=Condition:asserter", "_include"},
			{"Condition", "_include:iterate=Condition:asserter", "_include"},
			{"Practitioner", "_revinclude=Condition:asserter", "_revinclude"},
			{"Patient", "gender=female&_summary=count", "gender"},
		} {
			t.Run(c.typ+"?"+c.query, func(t *testing.T) {
				vals, _ := url.ParseQuery(c.query)
				q, err := s.ParseQuery(c.typ, vals)
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.Search(ctx, g, q)
				refusedAs(t, err, c.field)
			})
		}

		// Visible elements still search, sort and include.
		vals, _ := url.ParseQuery("status=finished&_sort=_lastUpdated&_include=Encounter:subject")
		q, _ := s.ParseQuery("Encounter", vals)
		res, err := s.Search(ctx, g, q)
		if err != nil || len(res.Matches) != 1 || len(res.Included) != 1 || res.Included[0].Ref() != "Patient/p1" {
			t.Fatalf("visible search: %+v, %v", res, err)
		}
		// _include=Condition:* follows the subject, not the hidden asserter.
		vals, _ = url.ParseQuery("_include=Condition:*")
		q, _ = s.ParseQuery("Condition", vals)
		res, err = s.Search(ctx, g, q)
		if err != nil || len(res.Matches) != 1 || refs(res.Included) != "Patient/p1" {
			t.Fatalf("_include=Condition:* included %s, want Patient/p1 only: %v", refs(res.Included), err)
		}
		// Without the guard's limit it follows both, so the narrowing is
		// what left the practitioner out.
		q, _ = s.ParseQuery("Condition", vals)
		if res, err = s.Search(ctx, nil, q); err != nil || refs(res.Included) != "Patient/p1 Practitioner/d1" {
			t.Fatalf("unguarded _include=Condition:* included %s: %v", refs(res.Included), err)
		}

		// Conditional criteria are searches too.
		cond := `{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}`
		_, _, err = s.Create(ctx, g, "Condition", []byte(cond), "asserter=Practitioner/d1")
		refusedAs(t, err, "asserter")
		_, _, err = s.ConditionalUpdate(ctx, g, "Condition", "asserter=Practitioner/d1", []byte(cond), "")
		refusedAs(t, err, "asserter")
		refusedAs(t, s.ConditionalDelete(ctx, g, "Condition", "asserter=Practitioner/d1"), "asserter")
		// A transaction's search entry and its conditional reference.
		for _, tx := range []string{
			`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"Encounter?reason-code=86406008"}}]}`,
			`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:5d7c1f0e-2a51-4c0b-9a4e-0c1f3b7d2e11","request":{"method":"POST","url":"Condition"},
			  "resource":{"resourceType":"Condition","subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter?reason-code=86406008"}}}]}`,
		} {
			res, err := s.ProcessBundle(ctx, g, []byte(tx))
			if err == nil && len(res.Entries) == 1 {
				err = res.Entries[0].Err
			}
			if !errs.Is(err, errs.NotSupported) {
				t.Fatalf("transaction over a hidden element: %v", err)
			}
		}
		// Nothing was written or deleted.
		vals, _ = url.ParseQuery("_summary=count")
		q, _ = s.ParseQuery("Condition", vals)
		if res, err := s.Search(ctx, nil, q); err != nil || res.Total == nil || *res.Total != 1 {
			t.Fatalf("conditions after the refusals: %v, %v", res.Total, err)
		}
	})
}
