package terminology

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// orderLine builds one order-file line in CMS's fixed columns.
func orderLine(order int, code string, billable bool, short, long string) string {
	flag := "0"
	if billable {
		flag = "1"
	}
	return padLeftZero(order) + " " + padRight(code, 7) + " " + flag + " " + padRight(short, 60) + " " + long
}

func padLeftZero(n int) string {
	s := strings.Repeat("0", 5) + itoa(n)
	return s[len(s)-5:]
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func padRight(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat(" ", n-len(s))
}

func TestNormalizeICD10CM(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"E11.9", "E119", false},
		{"E119", "E119", false},
		{"I10", "I10", false},
		{"S72.001A", "S72001A", false},
		{"F32.A", "F32A", false},
		{"U07.1", "U071", false},
		{"e11.9", "", true},
		{"E1.19", "", true},
		{"E11.", "", true},
		{"E1", "", true},
		{"E11.90000", "", true},
		{"11.9", "", true},
		{"EE1.9", "", true},
		{"E11-9", "", true},
		{"E11 9", "", true},
		{"", "", true},
	}
	for _, tc := range tests {
		got, err := NormalizeICD10CM(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("NormalizeICD10CM(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestDottedICD10CM(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"E119": "E11.9", "I10": "I10", "S72001A": "S72.001A", "E11.9": "E11.9"} {
		if got := DottedICD10CM(in); got != want {
			t.Errorf("DottedICD10CM(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFiscalYearWindowRunsOctoberToSeptember(t *testing.T) {
	t.Parallel()
	w, err := DefaultICD10CMWindow("2026")
	if err != nil {
		t.Fatal(err)
	}
	if got := w.String(); got != "2025-10-01..2026-09-30" {
		t.Fatalf("window = %s", got)
	}
	cairo := time.FixedZone("EET", 2*3600)
	for _, tc := range []struct {
		date time.Time
		in   bool
	}{
		{time.Date(2025, 9, 30, 23, 0, 0, 0, time.UTC), false},
		{time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC), true},
		{time.Date(2026, 9, 30, 23, 59, 0, 0, time.UTC), true},
		{time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), false},
		// 00:30 on 1 October in Cairo is still 30 September in UTC; the
		// calendar date of service is the one in its own zone.
		{time.Date(2025, 10, 1, 0, 30, 0, 0, cairo), true},
	} {
		if got := w.Contains(tc.date); got != tc.in {
			t.Errorf("Contains(%s) = %v, want %v", tc.date, got, tc.in)
		}
	}
	for _, v := range []string{"2024-april", "26", "FY26", "1999"} {
		if _, err := DefaultICD10CMWindow(v); err == nil {
			t.Errorf("DefaultICD10CMWindow(%q) guessed a window", v)
		}
	}
	bad := Window{From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	if bad.Validate() == nil {
		t.Error("a window that ends before it starts validated")
	}
	if !(Window{}).Contains(time.Now()) {
		t.Error("an open window excludes a date")
	}
}

func TestParseOrderLineReadsTheColumns(t *testing.T) {
	t.Parallel()
	line := orderLine(4315, "E119", true, "Type 2 diabetes mellitus without complications", "Type 2 diabetes mellitus without complications")
	e, err := ParseOrderLine(line)
	if err != nil {
		t.Fatal(err)
	}
	want := OrderEntry{Order: 4315, Code: "E119", Billable: true,
		Short: "Type 2 diabetes mellitus without complications", Long: "Type 2 diabetes mellitus without complications"}
	if e != want {
		t.Fatalf("got %+v\nwant %+v", e, want)
	}
	h, err := ParseOrderLine(orderLine(4300, "E11", false, "Type 2 diabetes mellitus", "Type 2 diabetes mellitus"))
	if err != nil || h.Billable {
		t.Fatalf("header line: %+v, %v", h, err)
	}
	// A short description of exactly 60 characters fills its columns.
	full := strings.Repeat("x", 60)
	if e, err := ParseOrderLine(orderLine(1, "A00", false, full, "long")); err != nil || e.Short != full {
		t.Fatalf("60-character short description: %+v, %v", e, err)
	}
}

func TestParseOrderLineRejectsMalformedLines(t *testing.T) {
	t.Parallel()
	good := orderLine(1, "A000", true, "Cholera due to Vibrio cholerae 01, biovar cholerae", "Cholera due to Vibrio cholerae 01, biovar cholerae")
	set := func(i int, c byte) string { b := []byte(good); b[i] = c; return string(b) }
	tests := []struct {
		name, line, want string
	}{
		{"an empty line", "", "bytes long"},
		{"a line cut before the long description", good[:77], "bytes long"},
		{"a letter in the order number", set(2, 'x'), "order number"},
		{"order number zero", "00000" + good[5:], "zero"},
		{"no blank after the order number", set(5, '-'), "blank"},
		{"no blank after the code", set(13, 'X'), "blank"},
		{"a code that is not left-justified", "00001  A000   1" + good[15:], "left-justified"},
		{"a dotted code", "00001 A00.0   1" + good[15:], "upper-case letters and digits"},
		{"a lower-case code", "00001 a000    1" + good[15:], "upper-case letter"},
		{"a flag of 2", set(14, '2'), "header flag"},
		{"no blank before the short description", set(15, 'x'), "blank"},
		{"an empty short description", orderLine(1, "A000", true, "", "long"), "short description"},
		{"a short description spilling into column 77", set(76, 'x'), "blank"},
		{"a long description starting late", good[:77] + " late", "long description"},
		{"a control character in the long description", good + "\x01", "control character"},
		{"a non-ASCII byte in the fixed columns", set(20, 0xe9), "non-ASCII"},
		{"invalid UTF-8 in the long description", good + "\xff", "UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseOrderLine(tc.line)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestReadOrderFileReadsTheFixture(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/icd10cm_order_2022.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []OrderEntry
	if err := ReadOrderFile(f, func(e OrderEntry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("read %d entries, want 20", len(got))
	}
	byCode := map[string]OrderEntry{}
	for _, e := range got {
		byCode[e.Code] = e
	}
	if e := byCode["M545"]; e.Billable || e.Long != "Low back pain" {
		t.Errorf("M545 = %+v, want a header named Low back pain", e)
	}
	if e := byCode["S72001A"]; !e.Billable || !strings.HasPrefix(e.Long, "Fracture of unspecified part of neck of right femur, initial") {
		t.Errorf("S72001A = %+v", e)
	}
}

func TestReadOrderFileNamesTheBadLine(t *testing.T) {
	t.Parallel()
	l1 := orderLine(1, "E11", false, "Type 2 diabetes mellitus", "Type 2 diabetes mellitus")
	l2 := orderLine(2, "E119", true, "Type 2 diabetes mellitus without complications", "Type 2 diabetes mellitus without complications")
	l3 := orderLine(3, "I10", true, "Essential (primary) hypertension", "Essential (primary) hypertension")
	tests := []struct {
		name     string
		file     string
		wantLine int
		want     string
	}{
		{"a malformed third line", l1 + "\n" + l2 + "\n" + l3[:40] + "\n", 3, "bytes long"},
		{"an empty line in the middle", l1 + "\n\n" + l2 + "\n", 2, "bytes long"},
		{"order numbers going backwards", l2 + "\n" + l1 + "\n", 2, "does not follow"},
		{"a code listed twice", l1 + "\n" + l2 + "\n" + orderLine(3, "E119", true, "x", "x") + "\n", 3, "already appeared on line 2"},
		{"a billable code with a child", orderLine(1, "E11", true, "x", "x") + "\n" + l2 + "\n", 2, "billable codes have no children"},
		{"an empty file", "", 1, "empty"},
		{"a byte-order mark", "\xef\xbb\xbf" + l1 + "\n", 1, "byte-order mark"},
		{"a line too long to be real", l1 + "\n" + l2 + strings.Repeat("x", 5000) + "\n", 2, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ReadOrderFile(strings.NewReader(tc.file), func(OrderEntry) error { return nil })
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error = %v, want a *ParseError", err)
			}
			if pe.Line != tc.wantLine || !strings.Contains(pe.Msg, tc.want) {
				t.Fatalf("error = %v, want line %d mentioning %q", err, tc.wantLine, tc.want)
			}
		})
	}
}

func TestReadOrderFileAcceptsCRLF(t *testing.T) {
	t.Parallel()
	file := orderLine(1, "I10", true, "Essential (primary) hypertension", "Essential (primary) hypertension") + "\r\n"
	var got OrderEntry
	if err := ReadOrderFile(strings.NewReader(file), func(e OrderEntry) error { got = e; return nil }); err != nil {
		t.Fatal(err)
	}
	if got.Long != "Essential (primary) hypertension" {
		t.Fatalf("long description = %q", got.Long)
	}
}

func TestStarterSetIsWellFormed(t *testing.T) {
	t.Parallel()
	for system, set := range starterSets {
		seen := map[string]bool{}
		info := knownSystems[system]
		for _, c := range set {
			if p := info.checkFormat(c.code); p != nil {
				t.Errorf("%s starter code %s: %s", info.name, c.code, p.msg)
			}
			if strings.Contains(c.code, ".") {
				t.Errorf("%s starter code %s is dotted; store codes undotted", info.name, c.code)
			}
			if seen[c.code] || c.display == "" {
				t.Errorf("%s starter code %s is repeated or has no display", info.name, c.code)
			}
			seen[c.code] = true
		}
	}
	// Headers and billable codes both appear, and every header has a
	// billable code below it, as in a real release.
	var headers int
	for _, c := range icd10cmStarter {
		if c.billable {
			continue
		}
		headers++
		child := false
		for _, d := range icd10cmStarter {
			if d.billable && len(d.code) > len(c.code) && strings.HasPrefix(d.code, c.code) {
				child = true
			}
		}
		if !child {
			t.Errorf("starter header %s has no billable code below it", c.code)
		}
	}
	if headers == 0 || len(icd10cmStarter) < 24 {
		t.Errorf("starter set has %d codes, %d headers", len(icd10cmStarter), headers)
	}
}
