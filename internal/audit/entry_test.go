package audit

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

func TestCanonicalEncodingIsFixed(t *testing.T) {
	t.Parallel()
	e := Entry{
		Seq:          42,
		Time:         time.Date(2026, 3, 1, 9, 30, 0, 123456000, time.UTC),
		Actor:        "u1",
		Role:         "nurse",
		Action:       ActionRead,
		ResourceType: "Patient",
		ResourceID:   "p1",
		PatientID:    "p1",
		Purpose:      PurposeTreatment,
		Outcome:      OutcomeSuccess,
		Severity:     SeverityInfo,
		RequestID:    "r1",
		ClientAddr:   "10.0.0.1",
	}
	// The encoding is what the tree commits to: changing it breaks every
	// existing log, so it is pinned byte for byte.
	const want = "63617265666c6f772e61756469742e76310a" + // "careflow.audit.v1\n"
		"00064bf31d3fd840" + // 2026-03-01T09:30:00.123456Z in microseconds
		"027531" + "056e75727365" + "0472656164" + "075061746965 6e74" + "027031" + "027031" +
		"055452454154" + "0773756363657373" + "04696e666f" + "027231" + "0831302e302e302e31"
	got := hex.EncodeToString(e.Canonical())
	if got != strings.ReplaceAll(want, " ", "") {
		t.Fatalf("canonical encoding changed:\n got %s\nwant %s", got, strings.ReplaceAll(want, " ", ""))
	}
	// Seq is the position in the tree, not part of the leaf.
	moved := e
	moved.Seq = 7
	if moved.LeafHash() != e.LeafHash() {
		t.Error("the leaf hash depends on Seq")
	}
}

func TestCanonicalEncodingSeparatesFields(t *testing.T) {
	t.Parallel()
	a := Entry{Actor: "ab", Role: "c"}
	b := Entry{Actor: "a", Role: "bc"}
	if a.LeafHash() == b.LeafHash() {
		t.Fatal("moving a boundary between fields kept the leaf hash")
	}
	c := Entry{Time: time.Unix(0, 1000)}
	d := Entry{Time: time.Unix(0, 2000)}
	if c.LeafHash() == d.LeafHash() {
		t.Fatal("a microsecond of difference kept the leaf hash")
	}
}

func TestNormalizeAcceptsAndCleansAnEntry(t *testing.T) {
	t.Parallel()
	e := sampleEntry(1)
	e.Severity = ""
	e.ClientAddr = "::ffff:192.0.2.7"
	got, err := e.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if got.Severity != SeverityInfo {
		t.Errorf("severity = %q, want info by default", got.Severity)
	}
	if got.ClientAddr != "192.0.2.7" {
		t.Errorf("client address = %q, want the IPv4 form", got.ClientAddr)
	}
}

func TestNormalizeRejectsWhatIsNotAnIdentifier(t *testing.T) {
	t.Parallel()
	const secret = "Mohamed Ali"
	cases := []struct {
		name  string
		edit  func(*Entry)
		field string
	}{
		{"a patient name where the id belongs", func(e *Entry) { e.PatientID = secret }, "patient_id"},
		{"a note as a resource id", func(e *Entry) { e.ResourceID = "fell at home\n" + secret }, "resource_id"},
		{"an over-long actor", func(e *Entry) { e.Actor = strings.Repeat("x", maxField+1) }, "actor"},
		{"no role", func(e *Entry) { e.Role = "" }, "role"},
		{"an upper-case action", func(e *Entry) { e.Action = "READ" }, "action"},
		{"no resource type", func(e *Entry) { e.ResourceType = "" }, "resource_type"},
		{"an unknown outcome", func(e *Entry) { e.Outcome = "maybe" }, "outcome"},
		{"an unknown severity", func(e *Entry) { e.Severity = "critical" }, "severity"},
		{"an address with a port", func(e *Entry) { e.ClientAddr = "192.0.2.1:443" }, "client_addr"},
		{"a host name as address", func(e *Entry) { e.ClientAddr = "clinic.example" }, "client_addr"},
		{"a request id with spaces", func(e *Entry) { e.RequestID = "a b" }, "request_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := sampleEntry(2)
			c.edit(&e)
			_, err := e.normalize()
			ee, ok := errs.As(err)
			if !ok || ee.Kind != errs.Invalid || ee.Field != c.field {
				t.Fatalf("err = %v, want invalid in field %s", err, c.field)
			}
			if strings.Contains(err.Error(), "Mohamed") || strings.Contains(err.Error(), "fell") {
				t.Fatalf("the error quotes the rejected value: %v", err)
			}
		})
	}
}
