package record

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func mustCreate(t *testing.T, s *Service, typ, body string) Record {
	t.Helper()
	rec, created, err := s.Create(context.Background(), nil, typ, []byte(body), "")
	if err != nil || !created {
		t.Fatalf("create %s: created=%v err=%v", typ, created, err)
	}
	return rec
}

func mustPut(t *testing.T, s *Service, typ, id, body string) Record {
	t.Helper()
	rec, _, err := s.Update(context.Background(), nil, typ, id, []byte(body), "")
	if err != nil {
		t.Fatalf("put %s/%s: %v", typ, id, err)
	}
	return rec
}

func TestWriteReadVersionsAndHistory(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		body := `{"resourceType":"Patient","extension":[{"url":"http://example.org/x","valueString":"kept"}],"birthDate":"1970-01-02","_birthDate":{"extension":[{"url":"http://example.org/y","valueBoolean":true}]},"name":[{"family":"Kept"}]}`
		rec := mustCreate(t, s, "Patient", body)
		if rec.Version != 1 || rec.ID == "" || rec.PatientID != rec.ID {
			t.Fatalf("created %+v", rec)
		}
		got, err := s.Read(ctx, nil, "Patient", rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := fhir.SetIDAndMeta([]byte(body), rec.ID, "1", got.LastUpdated)
		if eq, _ := fhir.JSONEqual(want, got.JSON); !eq {
			t.Fatalf("read back %s, want %s", got.JSON, want)
		}

		// If-Match: the right version updates, a stale one fails with 412.
		upd := strings.Replace(body, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+rec.ID+`"`, 1)
		if _, _, err := s.Update(ctx, nil, "Patient", rec.ID, []byte(upd), `W/"1"`); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Update(ctx, nil, "Patient", rec.ID, []byte(upd), `W/"1"`); !errs.Is(err, errs.PreconditionFailed) {
			t.Fatalf("stale If-Match: %v, want precondition_failed", err)
		}
		// Create on update with the client's id.
		r2, created, err := s.Update(ctx, nil, "Patient", "client-chosen", []byte(`{"resourceType":"Patient","id":"client-chosen"}`), "")
		if err != nil || !created || r2.Version != 1 {
			t.Fatalf("create-on-update: %+v %v %v", r2, created, err)
		}
		// An id in the body that differs from the URL is refused.
		if _, _, err := s.Update(ctx, nil, "Patient", "other", []byte(`{"resourceType":"Patient","id":"client-chosen"}`), ""); !errs.Is(err, errs.Invalid) {
			t.Fatalf("mismatched id: %v", err)
		}
		// Delete, then read is gone, vread of v1 still works, history has 3.
		if err := s.Delete(ctx, nil, "Patient", rec.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Read(ctx, nil, "Patient", rec.ID); !errors.Is(err, ErrDeleted) {
			t.Fatalf("read after delete: %v", err)
		}
		v1, err := s.VRead(ctx, nil, "Patient", rec.ID, "1")
		if err != nil || v1.Version != 1 {
			t.Fatalf("vread 1: %+v %v", v1, err)
		}
		if _, err := s.VRead(ctx, nil, "Patient", rec.ID, "9"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("vread 9: %v", err)
		}
		h, err := s.History(ctx, nil, "Patient", rec.ID, url.Values{})
		if err != nil {
			t.Fatal(err)
		}
		var versions []int
		for _, e := range h.Entries {
			versions = append(versions, e.Version)
		}
		if !slices.Equal(versions, []int{3, 2, 1}) || !h.Entries[0].Deleted || h.Entries[0].Method != "DELETE" {
			t.Fatalf("history versions %v, first %+v", versions, h.Entries[0])
		}
		th, err := s.History(ctx, nil, "Patient", "", url.Values{"_count": {"2"}})
		if err != nil || len(th.Entries) != 2 || !th.HasNext {
			t.Fatalf("type history: %+v %v", th, err)
		}
		// Invalid resources are refused with their issues.
		_, _, err = s.Create(ctx, nil, "Patient", []byte(`{"resourceType":"Patient","gender":"robot"}`), "")
		var ie *IssuesError
		if !errors.As(err, &ie) || !errs.Is(err, errs.Unprocessable) || len(ie.Issues) == 0 || !slices.Contains(ie.Issues[0].Expression, "Patient.gender") {
			t.Fatalf("invalid gender: %v", err)
		}
		if _, _, err := s.Create(ctx, nil, "AuditEvent", []byte(`{"resourceType":"AuditEvent"}`), ""); !errs.Is(err, errs.MethodNotAllowed) {
			t.Fatalf("AuditEvent create: %v", err)
		}
	})
}

func TestConditionalCreateAndUpdate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		body := `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"MRN-1"}]}`
		a, created, err := s.Create(ctx, nil, "Patient", []byte(body), "identifier=urn:mrn|MRN-1")
		if err != nil || !created {
			t.Fatal(err)
		}
		b, created, err := s.Create(ctx, nil, "Patient", []byte(body), "identifier=urn:mrn|MRN-1")
		if err != nil || created || b.ID != a.ID {
			t.Fatalf("second conditional create: %+v created=%v %v", b, created, err)
		}
		mustCreate(t, s, "Patient", body)
		if _, _, err := s.Create(ctx, nil, "Patient", []byte(body), "identifier=urn:mrn|MRN-1"); !errs.Is(err, errs.PreconditionFailed) {
			t.Fatalf("two matches: %v", err)
		}
		c, created, err := s.ConditionalUpdate(ctx, nil, "Patient", "identifier=urn:mrn|NEW", []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"NEW"}]}`), "")
		if err != nil || !created {
			t.Fatalf("conditional update, no match: %v", err)
		}
		d, created, err := s.ConditionalUpdate(ctx, nil, "Patient", "identifier=urn:mrn|NEW", []byte(`{"resourceType":"Patient","active":true,"identifier":[{"system":"urn:mrn","value":"NEW"}]}`), "")
		if err != nil || created || d.ID != c.ID || d.Version != 2 {
			t.Fatalf("conditional update, one match: %+v %v", d, err)
		}
	})
}

// searchFixture stores a small world and returns the service and the ids
// by name.
func searchFixture(t *testing.T, db *store.DB) (*Service, map[string]string) {
	t.Helper()
	s := newService(t, db)
	ids := map[string]string{}
	put := func(name, typ, body string) {
		ids[name] = mustCreate(t, s, typ, body).ID
	}
	put("org", "Organization", `{"resourceType":"Organization","name":"Nile Insurance Company","identifier":[{"system":"urn:payer","value":"NIC"}]}`)
	put("mohamed", "Patient", `{"resourceType":"Patient","identifier":[{"system":"urn:eg:nid","value":"29001011234567"}],"name":[{"family":"Hassan","given":["Mohamed","Ali"]}],"gender":"male","birthDate":"1990-01-01","telecom":[{"system":"phone","value":"+20 100 123 4567"}],"address":[{"line":["12 Nile St"],"city":"Cairo"}]}`)
	put("mona", "Patient", `{"resourceType":"Patient","identifier":[{"system":"urn:eg:nid","value":"28505051234567"}],"name":[{"family":"حسن","given":["منى"]}],"gender":"female","birthDate":"1985-05-05"}`)
	put("maria", "Patient", `{"resourceType":"Patient","name":[{"family":"Müller","given":["María"]}],"gender":"female","active":true}`)
	p := func(n string) string { return "Patient/" + ids[n] }
	put("enc1", "Encounter", `{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"`+p("mohamed")+`"},"period":{"start":"2024-03-01T09:00:00Z","end":"2024-03-01T10:00:00Z"}}`)
	put("enc2", "Encounter", `{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},"subject":{"reference":"`+p("mona")+`"},"period":{"start":"2024-06-15"}}`)
	put("enc3", "Encounter", `{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},"subject":{"reference":"`+p("mohamed")+`"},"period":{"start":"2023-12-31T22:00:00Z","end":"2024-01-02T08:00:00Z"}}`)
	put("obs1", "Observation", `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"`+p("mohamed")+`"},"effectiveDateTime":"2024-03-01T09:30:00Z","valueQuantity":{"value":72.5,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`)
	put("obs2", "Observation", `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"`+p("mona")+`"},"effectiveDateTime":"2024-06-15","valueQuantity":{"value":100,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`)
	put("claim1", "Claim", `{"resourceType":"Claim","status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},"use":"claim","patient":{"reference":"`+p("mohamed")+`"},"created":"2024-03-02","provider":{"reference":"Organization/`+ids["org"]+`"},"insurer":{"reference":"Organization/`+ids["org"]+`"},"priority":{"coding":[{"code":"normal"}]},"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/x"}}],"item":[{"sequence":1,"productOrService":{"coding":[{"code":"99213"}]},"encounter":[{"reference":"Encounter/`+ids["enc1"]+`"}]}]}`)
	put("claim2", "Claim", `{"resourceType":"Claim","status":"draft","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},"use":"preauthorization","patient":{"reference":"`+p("mona")+`"},"created":"2024-06-16","provider":{"reference":"Organization/`+ids["org"]+`"},"priority":{"coding":[{"code":"normal"}]},"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/x"}}]}`)
	return s, ids
}

func searchIDs(t *testing.T, s *Service, typ, query string) ([]string, error) {
	t.Helper()
	vals, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	q, err := s.ParseQuery(typ, vals)
	if err != nil {
		return nil, err
	}
	res, err := s.Search(context.Background(), nil, q)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range res.Matches {
		out = append(out, m.ID)
	}
	return out, nil
}

func TestSearchParameters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s, ids := searchFixture(t, db)
		tests := []struct {
			name, typ, query string
			want             []string // fixture names; nil with wantErr
			wantErr          errs.Kind
		}{
			{"identifier by value (blind index)", "Patient", "identifier=29001011234567", []string{"mohamed"}, ""},
			{"identifier by system and value", "Patient", "identifier=urn:eg:nid|28505051234567", []string{"mona"}, ""},
			{"identifier with the wrong system", "Patient", "identifier=urn:other|28505051234567", []string{}, ""},
			{"identifier typed with spaces", "Patient", "identifier=2900 1011 234567", []string{"mohamed"}, ""},
			{"identifier :not", "Patient", "identifier:not=29001011234567", []string{"mona", "maria"}, ""},
			{"identifier :missing", "Patient", "identifier:missing=true", []string{"maria"}, ""},
			{"name prefix from three letters", "Patient", "name=moh", []string{"mohamed"}, ""},
			{"name two words", "Patient", "name=mohamed hass", []string{"mohamed"}, ""},
			{"name Arabic", "Patient", "family=حسن", []string{"mona"}, ""},
			{"name accents folded", "Patient", "given=maria", []string{"maria"}, ""},
			{"name :exact whole value", "Patient", "family:exact=Hassan", []string{"mohamed"}, ""},
			{"name :exact not a prefix", "Patient", "family:exact=Hass", []string{}, ""},
			{"name :contains refused on PHI", "Patient", "name:contains=ham", nil, errs.Invalid},
			{"name OR", "Patient", "given=mona,maria", []string{"maria"}, ""},
			{"address city, whole value (blind index)", "Patient", "address-city=CAIRO", []string{"mohamed"}, ""},
			{"address city, no prefixes on addresses", "Patient", "address-city=cai", []string{}, ""},
			{"address any part", "Patient", "address=12 nile st", []string{"mohamed"}, ""},
			{"name :exact matches a whole given name", "Patient", "name:exact=ali", []string{"mohamed"}, ""},
			{"name does not mix up parts of two patients", "Patient", "name=mona hassan", []string{}, ""},
			{"birthdate exact", "Patient", "birthdate=1990-01-01", []string{"mohamed"}, ""},
			{"birthdate range refused on PHI", "Patient", "birthdate=gt1980-01-01", nil, errs.Invalid},
			{"phone", "Patient", "phone=+201001234567", []string{"mohamed"}, ""},
			{"gender", "Patient", "gender=female", []string{"mona", "maria"}, ""},
			{"gender :not", "Patient", "gender:not=female", []string{"mohamed"}, ""},
			{"active", "Patient", "active=true", []string{"maria"}, ""},
			{"sort on PHI refused", "Patient", "_sort=family", nil, errs.Invalid},
			{"unknown parameter refused", "Patient", "nmae=x", nil, errs.Invalid},
			{"chain refused", "Encounter", "subject.name=x", nil, errs.Invalid},
			{"_id", "Patient", "_id=" + ids["maria"], []string{"maria"}, ""},
			{"reference by id", "Encounter", "patient=" + ids["mohamed"], []string{"enc1", "enc3"}, ""},
			{"reference by Type/id", "Encounter", "subject=Patient/" + ids["mona"], []string{"enc2"}, ""},
			{"reference with :Type", "Encounter", "subject:Patient=" + ids["mona"], []string{"enc2"}, ""},
			{"reference :missing", "Encounter", "service-provider:missing=true", []string{"enc1", "enc2", "enc3"}, ""},
			{"status", "Encounter", "status=finished", []string{"enc1", "enc3"}, ""},
			{"status OR", "Encounter", "status=finished,in-progress", []string{"enc1", "enc2", "enc3"}, ""},
			{"class with system", "Encounter", "class=http://terminology.hl7.org/CodeSystem/v3-ActCode|EMER", []string{"enc2"}, ""},
			{"class system only", "Encounter", "class=http://terminology.hl7.org/CodeSystem/v3-ActCode|", []string{"enc1", "enc2", "enc3"}, ""},
			{"date eq day", "Encounter", "date=2024-03-01", []string{"enc1"}, ""},
			{"date eq month", "Encounter", "date=2024-03", []string{"enc1"}, ""},
			{"date ne", "Encounter", "date=ne2024-03-01", []string{"enc2", "enc3"}, ""},
			{"date gt", "Encounter", "date=gt2024-05-01", []string{"enc2"}, ""},
			{"date lt", "Encounter", "date=lt2024-01-01", []string{"enc3"}, ""},
			{"date ge", "Encounter", "date=ge2024-03-01", []string{"enc1", "enc2"}, ""},
			{"date le", "Encounter", "date=le2024-03-01", []string{"enc1", "enc3"}, ""},
			{"date sa", "Encounter", "date=sa2024-03-01", []string{"enc2"}, ""},
			{"date eb", "Encounter", "date=eb2024-03-01", []string{"enc3"}, ""},
			{"date ap", "Encounter", "date=ap2024-06-15", []string{"enc2"}, ""},
			{"date and date: overlapping periods match", "Encounter", "date=ge2024-01-01&date=le2024-12-31", []string{"enc1", "enc2", "enc3"}, ""},
			{"date and date: within", "Encounter", "date=ge2024-02-01&date=le2024-12-31", []string{"enc1", "enc2"}, ""},
			{"date not a date", "Encounter", "date=yesterday", nil, errs.Invalid},
			{"claim use", "Claim", "use=preauthorization", []string{"claim2"}, ""},
			{"claim created ge", "Claim", "created=ge2024-06-01", []string{"claim2"}, ""},
			{"claim encounter", "Claim", "encounter=" + ids["enc1"], []string{"claim1"}, ""},
			{"claim insurer missing", "Claim", "insurer:missing=true", []string{"claim2"}, ""},
			{"claim provider and status", "Claim", "provider=Organization/" + ids["org"] + "&status=active", []string{"claim1"}, ""},
			{"quantity eq implicit precision", "Observation", "value-quantity=72.5", []string{"obs1"}, ""},
			{"quantity gt with unit", "Observation", "value-quantity=gt80|http://unitsofmeasure.org|kg", []string{"obs2"}, ""},
			{"quantity le", "Observation", "value-quantity=le72.5", []string{"obs1"}, ""},
			{"quantity ne", "Observation", "value-quantity=ne100", []string{"obs1"}, ""},
			{"quantity ap", "Observation", "value-quantity=ap95", []string{"obs2"}, ""},
			{"observation code", "Observation", "code=http://loinc.org|29463-7", []string{"obs1", "obs2"}, ""},
			{"organization name starts with", "Organization", "name=nile", []string{"org"}, ""},
			{"organization name :contains", "Organization", "name:contains=insur", []string{"org"}, ""},
			{"organization name :exact", "Organization", "name:exact=Nile Insurance Company", []string{"org"}, ""},
			{"organization name :exact is case-sensitive", "Organization", "name:exact=nile insurance company", []string{}, ""},
			{"_lastUpdated gt far past", "Organization", "_lastUpdated=gt2000-01-01", []string{"org"}, ""},
			{"_lastUpdated lt far past", "Organization", "_lastUpdated=lt2000-01-01", []string{}, ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := searchIDs(t, s, tc.typ, tc.query)
				if tc.wantErr != "" {
					if !errs.Is(err, tc.wantErr) {
						t.Fatalf("err = %v, want kind %s", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want := []string{}
				for _, n := range tc.want {
					want = append(want, ids[n])
				}
				sort.Strings(got)
				sort.Strings(want)
				if got == nil {
					got = []string{}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("got %v, want %v (%v)", names(ids, got), tc.want, tc.query)
				}
			})
		}
	})
}

func names(ids map[string]string, got []string) []string {
	var out []string
	for _, g := range got {
		for n, id := range ids {
			if id == g {
				out = append(out, n)
			}
		}
	}
	return out
}

func TestSearchPagingIncludesAndCount(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, ids := searchFixture(t, db)
		q, err := s.ParseQuery("Encounter", url.Values{"_count": {"2"}, "_sort": {"date"}})
		if err != nil {
			t.Fatal(err)
		}
		page1, err := s.Search(ctx, nil, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page1.Matches) != 2 || !page1.HasNext || page1.Matches[0].ID != ids["enc3"] || page1.Matches[1].ID != ids["enc1"] {
			t.Fatalf("page 1: %d matches, next=%v", len(page1.Matches), page1.HasNext)
		}
		tok, err := s.SealPage(q, 2)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(tok, "date") {
			t.Fatal("paging token shows the query")
		}
		typ, vals, err := s.OpenPage(ctx, tok)
		if err != nil || typ != "Encounter" {
			t.Fatalf("open page: %v %v", typ, err)
		}
		q2, err := s.ParseQuery(typ, vals)
		if err != nil {
			t.Fatal(err)
		}
		page2, err := s.Search(ctx, nil, q2)
		if err != nil || len(page2.Matches) != 1 || page2.HasNext || page2.Matches[0].ID != ids["enc2"] {
			t.Fatalf("page 2: %+v %v", page2, err)
		}
		if _, _, err := s.OpenPage(ctx, tok[:len(tok)-2]+"AA"); err == nil {
			t.Fatal("tampered token accepted")
		}

		q, _ = s.ParseQuery("Encounter", url.Values{"_summary": {"count"}, "status": {"finished"}})
		res, err := s.Search(ctx, nil, q)
		if err != nil || res.Total == nil || *res.Total != 2 || len(res.Matches) != 0 {
			t.Fatalf("_summary=count: %+v %v", res, err)
		}
		q, _ = s.ParseQuery("Encounter", url.Values{"_total": {"accurate"}, "_count": {"1"}})
		res, err = s.Search(ctx, nil, q)
		if err != nil || res.Total == nil || *res.Total != 3 || len(res.Matches) != 1 {
			t.Fatalf("_total=accurate: %+v %v", res, err)
		}

		q, _ = s.ParseQuery("Encounter", url.Values{"_id": {ids["enc1"]}, "_include": {"Encounter:patient"}})
		res, err = s.Search(ctx, nil, q)
		if err != nil || len(res.Included) != 1 || res.Included[0].ID != ids["mohamed"] {
			t.Fatalf("_include: %+v %v", res, err)
		}
		q, _ = s.ParseQuery("Patient", url.Values{"_id": {ids["mohamed"]}, "_revinclude": {"Encounter:patient", "Claim:patient"}})
		res, err = s.Search(ctx, nil, q)
		if err != nil || len(res.Included) != 3 {
			t.Fatalf("_revinclude: %d included, %v", len(res.Included), err)
		}
		// A guard that refuses a patient hides it from includes.
		q, _ = s.ParseQuery("Encounter", url.Values{"_id": {ids["enc1"]}, "_include": {"Encounter:patient"}})
		res, err = s.Search(ctx, denyPatient(ids["mohamed"]), q)
		if err != nil || len(res.Included) != 0 || len(res.Matches) != 0 {
			t.Fatalf("guarded _include: %d matches, %d included, %v", len(res.Matches), len(res.Included), err)
		}
	})
}

// denyPatient is a guard that refuses every record of one patient.
type denyPatient string

func (d denyPatient) Allow(_ context.Context, a Access) error {
	if a.PatientID == string(d) {
		return errs.E(errs.Forbidden, "denied")
	}
	return nil
}

func TestRewriteReferences(t *testing.T) {
	in := `{"resourceType":"Observation","subject":{"reference":"urn:uuid:1","display":"x<y & z"},"valueQuantity":{"value":1.50},"note":[{"text":"urn:uuid:1"}],"a":[1,{"b":null},[true,false]],"focus":[{"reference":"Patient?identifier=a|b"}]}`
	out, err := rewriteReferences([]byte(in), map[string]string{"urn:uuid:1": "Patient/p1", "Patient?identifier=a|b": "Patient/p2"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Observation","subject":{"reference":"Patient/p1","display":"x<y & z"},"valueQuantity":{"value":1.50},"note":[{"text":"urn:uuid:1"}],"a":[1,{"b":null},[true,false]],"focus":[{"reference":"Patient/p2"}]}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
}

func TestParseDateRange(t *testing.T) {
	for _, tc := range []struct{ in, low, high string }{
		{"2024", "2024-01-01T00:00:00Z", "2024-12-31T23:59:59.999999Z"},
		{"2024-02", "2024-02-01T00:00:00Z", "2024-02-29T23:59:59.999999Z"},
		{"2024-03-01", "2024-03-01T00:00:00Z", "2024-03-01T23:59:59.999999Z"},
		{"2024-03-01T10:00:00+02:00", "2024-03-01T08:00:00Z", "2024-03-01T08:00:00.999999Z"},
		{"2024-03-01T10:00:00.5Z", "2024-03-01T10:00:00.5Z", "2024-03-01T10:00:00.599999Z"},
		{"2024-03-01T10:00", "2024-03-01T10:00:00Z", "2024-03-01T10:00:59.999999Z"},
	} {
		l, h, ok := parseDateRange(tc.in)
		if !ok || fhir.FormatInstant(l) != tc.low || fhir.FormatInstant(h) != tc.high {
			t.Errorf("%s: %v %v %v", tc.in, fhir.FormatInstant(l), fhir.FormatInstant(h), ok)
		}
	}
	for _, bad := range []string{"", "24", "2024-13", "2024-03-01T25:00:00Z", "yesterday"} {
		if _, _, ok := parseDateRange(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestR4TypesAreKnown(t *testing.T) {
	for _, typ := range r4Types {
		if !fhir.IsResourceType(typ) {
			t.Errorf("%s is not an R4 resource type", typ)
		}
	}
	for _, typ := range ModelledTypes() {
		if !slices.Contains(r4Types, typ) {
			t.Errorf("modelled type %s missing from r4Types", typ)
		}
		for _, p := range ParamsOf(typ) {
			if len(p.Paths) == 0 || p.Doc == "" {
				t.Errorf("%s.%s has no path or documentation", typ, p.Name)
			}
		}
	}
	_ = fmt.Sprint
}

func TestConcurrentUpdatesWithIfMatch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		rec := mustPut(t, s, "Patient", "race", `{"resourceType":"Patient","id":"race"}`)
		const writers = 8
		errsCh := make(chan error, writers)
		for i := range writers {
			go func() {
				body := fmt.Sprintf(`{"resourceType":"Patient","id":"race","gender":"%s"}`, []string{"male", "female"}[i%2])
				_, _, err := s.Update(ctx, nil, "Patient", "race", []byte(body), rec.ETag())
				errsCh <- err
			}()
		}
		won := 0
		for range writers {
			err := <-errsCh
			switch {
			case err == nil:
				won++
			case errs.Is(err, errs.PreconditionFailed), errs.Is(err, errs.Conflict):
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		cur, err := s.Read(ctx, nil, "Patient", "race")
		if won != 1 || err != nil || cur.Version != 2 {
			t.Fatalf("%d writers won, current version %d (%v); want exactly one and version 2", won, cur.Version, err)
		}
	})
}

// refuseAll refuses every decision, to fail some creates of a group.
type refuseAll struct{}

func (refuseAll) Allow(context.Context, Access) error { return errs.E(errs.Forbidden, "denied") }

func TestGroupCommitIsolatesFailures(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		const n = 30
		type result struct {
			rec Record
			err error
		}
		results := make(chan result, n)
		for i := range n {
			go func() {
				var g Guard
				if i%3 == 0 {
					g = refuseAll{}
				}
				rec, _, err := s.Create(ctx, g, "Patient", benchPatient(i), "")
				results <- result{rec, err}
			}()
		}
		ok, denied := 0, 0
		for range n {
			r := <-results
			switch {
			case r.err == nil:
				ok++
				if _, err := s.Read(ctx, nil, "Patient", r.rec.ID); err != nil {
					t.Errorf("created %s, read: %v", r.rec.ID, err)
				}
			case errs.Is(r.err, errs.Forbidden):
				denied++
			default:
				t.Errorf("unexpected: %v", r.err)
			}
		}
		q, _ := s.ParseQuery("Patient", url.Values{"_summary": {"count"}})
		res, err := s.Search(ctx, nil, q)
		if err != nil || ok != 20 || denied != 10 || *res.Total != ok {
			t.Fatalf("%d created, %d denied, %v stored (%v); want 20, 10, 20", ok, denied, res.Total, err)
		}
	})
}

// Many creates at once: every one is committed and answered exactly once,
// whether one batch runs at a time (SQLite) or several side by side
// (PostgreSQL), and the committer is left idle: no leader's place held,
// nothing waiting.
func TestGroupCommitUnderManyConcurrentCreates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		const writers, each = 24, 10
		ids := make(chan string, writers*each)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					rec, _, err := s.Create(ctx, nil, "Patient", benchPatient(w*each+i), "")
					if err != nil {
						t.Error(err)
						return
					}
					ids <- rec.ID
				}
			})
		}
		wg.Wait()
		close(ids)
		seen := map[string]bool{}
		for id := range ids {
			if seen[id] {
				t.Fatalf("%s answered twice", id)
			}
			seen[id] = true
			if _, err := s.Read(ctx, nil, "Patient", id); err != nil {
				t.Fatalf("created %s, read: %v", id, err)
			}
		}
		if len(seen) != writers*each {
			t.Fatalf("%d creates answered, want %d", len(seen), writers*each)
		}
		s.group.mu.Lock()
		running, pending := s.group.running, len(s.group.pending)
		s.group.mu.Unlock()
		if running != 0 || pending != 0 {
			t.Fatalf("after the creates: %d leaders running, %d creates waiting", running, pending)
		}
	})
}
