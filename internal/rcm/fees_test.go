package rcm

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
	"github.com/careflow/careflow/internal/terminology"
)

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseAmountIsExactInMinorUnits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, cur string
		want    int64
		bad     bool
	}{
		{"1250", "EGP", 125000, false},
		{"1250.5", "EGP", 125050, false},
		{"1250.50", "EGP", 125050, false},
		{"0.01", "EGP", 1, false},
		{"0.1", "EGP", 10, false},
		{"3.125", "KWD", 3125, false},
		{"1500", "JPY", 1500, false},
		{"0019.99", "USD", 1999, false},
		{"1250.505", "EGP", 0, true},
		{"12.5", "JPY", 0, true},
		{"-5", "EGP", 0, true},
		{"1,250.00", "EGP", 0, true},
		{"1e3", "EGP", 0, true},
		{"", "EGP", 0, true},
		{".5", "EGP", 0, true},
		{"5.", "EGP", 0, true},
		{"١٢٥٠", "EGP", 0, true},
		{"99999999999999", "EGP", 0, true},
	}
	for _, c := range cases {
		got, err := ParseAmount(c.in, c.cur)
		if c.bad {
			if err == nil {
				t.Errorf("ParseAmount(%q, %s) = %d, want an error", c.in, c.cur, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseAmount(%q, %s) = %d, %v; want %d", c.in, c.cur, got, err, c.want)
		}
		// Back to a decimal and in again: the same minor units.
		if again, err := ParseAmount(FormatAmount(got, c.cur), c.cur); err != nil || again != got {
			t.Errorf("%q %s does not round-trip: %d, %v", c.in, c.cur, again, err)
		}
	}
	if s := FormatAmount(125050, "EGP"); s != "1250.50" {
		t.Errorf("FormatAmount = %s", s)
	}
	if s := FormatAmount(3125, "KWD"); s != "3.125" {
		t.Errorf("FormatAmount KWD = %s", s)
	}
	if s := FormatAmount(7, "EGP"); s != "0.07" {
		t.Errorf("FormatAmount small = %s", s)
	}
}

func loadExample(t *testing.T, f *Fees, l FeeLoad) ScheduleVersion {
	t.Helper()
	file, err := os.Open("../../examples/fee-schedule.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	v, loaded, err := f.Load(context.Background(), file, l)
	if err != nil || !loaded {
		t.Fatalf("load example: %+v, %v, %v", v, loaded, err)
	}
	return v
}

func TestFeeScheduleLoadsPricesAndKeepsVersions(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := NewFees(db, func() time.Time { return day("2026-03-01") })
		v1 := loadExample(t, f, FeeLoad{Payer: "payer-misr@hcx", Name: "مصر للتأمين / Misr Insurance", Version: "2026.1"})
		if v1.Items != 14 || v1.Seq != 1 || v1.EffectiveFrom != "2026-01-01" || v1.EffectiveTo != "" {
			t.Fatalf("version = %+v", v1)
		}
		q := db.Reader()
		p, ok, err := f.Price(ctx, q, "payer-misr@hcx", "CPT", "99213", day("2026-03-05"))
		if err != nil || !ok || p != (Price{Amount: 45000, Currency: "EGP", ScheduleVersion: "2026.1"}) {
			t.Fatalf("price 99213 = %+v %v %v", p, ok, err)
		}
		// A URI names the same system.
		p, ok, _ = f.Price(ctx, q, "payer-misr@hcx", terminology.SystemHCPCS, "J1885", day("2026-03-05"))
		if !ok || p.Amount != 3575 {
			t.Fatalf("price J1885 = %+v %v", p, ok)
		}
		// A row's own currency wins over the payer's.
		p, _, _ = f.Price(ctx, q, "payer-misr@hcx", "CPT", "99214", day("2026-03-05"))
		if p.Currency != "USD" || p.Amount != 2500 {
			t.Fatalf("price 99214 = %+v", p)
		}
		// Local system rows price by their own periods.
		for date, want := range map[string]int64{"2026-06-30": 90000, "2026-07-01": 97500} {
			p, ok, _ := f.Price(ctx, q, "payer-misr@hcx", "urn:careflow:local:eg-hospital", "ROOM-WARD", day(date))
			if !ok || p.Amount != want {
				t.Errorf("ward on %s = %+v %v, want %d", date, p, ok, want)
			}
		}
		if _, ok, _ := f.Price(ctx, q, "payer-misr@hcx", "CPT", "99213", day("2025-12-31")); ok {
			t.Error("a date before every row is priced")
		}
		if _, ok, _ := f.Price(ctx, q, "other-payer", "CPT", "99213", day("2026-03-05")); ok {
			t.Error("another payer's code is priced")
		}
		for code, want := range map[string]bool{"59400": true, "33510": true, "99213": false, "00000": false} {
			got, err := f.PreauthRequired(ctx, q, "payer-misr@hcx", "CPT", code, day("2026-03-05"))
			if err != nil || got != want {
				t.Errorf("preauth %s = %v %v, want %v", code, got, err, want)
			}
		}
		if cur, _ := f.Currency(ctx, q, "payer-misr@hcx"); cur != "EGP" {
			t.Errorf("currency = %s", cur)
		}
		if cur, _ := f.Currency(ctx, q, "unknown"); cur != "EGP" {
			t.Errorf("default currency = %s", cur)
		}

		// Arabic and Latin descriptions come back byte for byte.
		var desc string
		if err := q.QueryRow(ctx, `SELECT description FROM rcm_fee_items WHERE payer = $1 AND code = '99285'`, "payer-misr@hcx").Scan(&desc); err != nil {
			t.Fatal(err)
		}
		if want := "زيارة طوارئ عالية الخطورة / Emergency department visit, high severity"; desc != want {
			t.Errorf("description = %q", desc)
		}
		ps, _, _ := f.Payer(ctx, "payer-misr@hcx")
		if ps.Name != "مصر للتأمين / Misr Insurance" {
			t.Errorf("payer name = %q", ps.Name)
		}

		// A newer version effective from April prices April on, and the
		// first keeps pricing March; a code only the first has stays priced.
		v2, loaded, err := f.Load(ctx, strings.NewReader("code,system,price,preauth,effective_from\n99213,CPT,500,yes,2026-04-01\n"),
			FeeLoad{Payer: "payer-misr@hcx"})
		if err != nil || !loaded || v2.Seq != 2 || !strings.HasPrefix(v2.Version, "sha256-") {
			t.Fatalf("second load = %+v %v %v", v2, loaded, err)
		}
		if p, _, _ := f.Price(ctx, q, "payer-misr@hcx", "CPT", "99213", day("2026-04-02")); p.Amount != 50000 || p.ScheduleVersion != v2.Version {
			t.Errorf("April price = %+v", p)
		}
		if p, _, _ := f.Price(ctx, q, "payer-misr@hcx", "CPT", "99213", day("2026-03-31")); p.Amount != 45000 {
			t.Errorf("March price = %+v", p)
		}
		if need, _ := f.PreauthRequired(ctx, q, "payer-misr@hcx", "CPT", "99213", day("2026-04-02")); !need {
			t.Error("the newer version's pre-authorization flag is not read")
		}
		// The same file under its version again changes nothing.
		again, loaded, err := f.Load(ctx, strings.NewReader("code,system,price,preauth,effective_from\n99213,CPT,500,yes,2026-04-01\n"),
			FeeLoad{Payer: "payer-misr@hcx"})
		if err != nil || loaded || again.Seq != 2 {
			t.Errorf("reload = %+v %v %v", again, loaded, err)
		}
		// Other content under a taken version is a conflict.
		_, _, err = f.Load(ctx, strings.NewReader("code,system,price,preauth,effective_from\n99213,CPT,600,yes,2026-04-01\n"),
			FeeLoad{Payer: "payer-misr@hcx", Version: "2026.1"})
		if !errs.Is(err, errs.Conflict) {
			t.Errorf("taken version: %v", err)
		}
		vs, err := f.Schedules(ctx, "payer-misr@hcx")
		if err != nil || len(vs) != 2 || vs[0].Seq != 2 || vs[1].Version != "2026.1" {
			t.Errorf("schedules = %+v %v", vs, err)
		}
		codes, err := f.PreauthCodes(ctx, "payer-misr@hcx", day("2026-04-02"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range codes {
			got = append(got, c.Code)
		}
		if strings.Join(got, ",") != "33510,59400,99213,J9035" {
			t.Errorf("preauth codes = %v", got)
		}
	})
}

func TestFeeScheduleCurrencyIsThePayers(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := NewFees(db, nil)
		file := "system,code,price,preauth,effective_from\nCPT,99213,12.125,no,2026-01-01\n"
		// Three decimals are too many for EGP, the default.
		if _, _, err := f.Load(ctx, strings.NewReader(file), FeeLoad{Payer: "kw-payer"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("EGP with 3 decimals: %v", err)
		}
		if _, _, err := f.Load(ctx, strings.NewReader(file), FeeLoad{Payer: "kw-payer", Currency: "kwd"}); err != nil {
			t.Fatal(err)
		}
		p, ok, _ := f.Price(ctx, db.Reader(), "kw-payer", "CPT", "99213", day("2026-02-01"))
		if !ok || p.Amount != 12125 || p.Currency != "KWD" {
			t.Errorf("price = %+v", p)
		}
		// A later load without --currency keeps the payer's.
		if _, _, err := f.Load(ctx, strings.NewReader("system,code,price,preauth,effective_from\nCPT,99214,1.500,no,2026-01-01\n"), FeeLoad{Payer: "kw-payer"}); err != nil {
			t.Fatal(err)
		}
		if cur, _ := f.Currency(ctx, db.Reader(), "kw-payer"); cur != "KWD" {
			t.Errorf("currency after a second load = %s", cur)
		}
	})
}

func TestFeeScheduleBadRowsAreAllReportedAndNothingLoads(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := NewFees(db, nil)
		file := strings.Join([]string{
			"system,code,description,price,currency,preauth,effective_from,effective_to",
			"CPT,99213,ok,450,,no,2026-01-01,",         // 2 fine
			"CPT,9921,short,450,,no,2026-01-01,",       // 3 code
			"LOINC,1234-5,x,10,,no,2026-01-01,",        // 4 system
			"CPT,99285,x,12.345,,no,2026-01-01,",       // 5 price
			"CPT,93000,x,10,XYZ,no,2026-01-01,",        // 6 currency
			"CPT,93001,x,10,,maybe,2026-01-01,",        // 7 preauth
			"CPT,93002,x,10,,no,01/02/2026,",           // 8 effective_from
			"CPT,93003,x,10,,no,2026-02-01,2026-01-01", // 9 effective_to
			"CPT,99213,again,500,,no,2026-06-01,",      // 10 overlaps line 2
			"CPT,93005,x,10,,no",                       // 11 field count
			"HCPCS,Z9999,x,10,,no,2026-01-01,",         // 12 HCPCS format
		}, "\n") + "\n"
		_, _, err := f.Load(ctx, strings.NewReader(file), FeeLoad{Payer: "p1"})
		var fe *FeeFileError
		if !errs.Is(err, errs.Invalid) || !errors.As(err, &fe) {
			t.Fatalf("err = %v", err)
		}
		want := map[int]string{3: "code", 4: "system", 5: "price", 6: "currency", 7: "preauth", 8: "effective_from", 9: "effective_to", 10: "code", 11: "", 12: "code"}
		if len(fe.Problems) != len(want) {
			t.Errorf("problems = %+v", fe.Problems)
		}
		for _, p := range fe.Problems {
			col, ok := want[p.Line]
			if !ok || col != p.Column {
				t.Errorf("unexpected problem %+v", p)
			}
		}
		if !strings.Contains(err.Error(), "line 10: code: is priced on line 2") {
			t.Errorf("message = %s", err)
		}
		// Problems name rules, not values.
		for _, v := range []string{"maybe", "XYZ", "01/02/2026", "12.345"} {
			if strings.Contains(err.Error(), v) {
				t.Errorf("the message repeats the value %q: %s", v, err)
			}
		}
		var n int
		if err := db.Reader().QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM rcm_fee_items) + (SELECT COUNT(*) FROM rcm_fee_schedules) + (SELECT COUNT(*) FROM rcm_payers)`).Scan(&n); err != nil || n != 0 {
			t.Errorf("rows after a refused load: %d %v", n, err)
		}
	})
}

func TestFeeScheduleFileShape(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, file string
		rule       string
	}{
		{"an empty file", "", "the file is empty"},
		{"a missing required column", "system,code,price\nCPT,99213,1\n", "preauth: the column is required"},
		{"an unknown column", "system,code,price,preauth,effective_from,colour\n", "column 6: is not a fee schedule column"},
		{"a header alone", "system,code,price,preauth,effective_from\n", "no rows after the header"},
		{"text that is not UTF-8", "system,code,price,preauth,effective_from\nCPT,99213,1,no,2026-01-01\nCPT,99214,\xff,no,2026-01-01\n", "line 3: is not UTF-8"},
		{"a column named twice", "system,code,code,price,preauth,effective_from\n", "code: is named twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseFeeFile(strings.NewReader(c.file), "EGP")
			if err == nil || !strings.Contains(err.Error(), c.rule) {
				t.Errorf("err = %v, want %q", err, c.rule)
			}
		})
	}
	// A byte-order mark and CRLF line ends are read.
	parsed, err := parseFeeFile(strings.NewReader("\uFEFFSystem,Code,Price,Preauth,Effective_From\r\nCPT,99213,1,YES,2026-01-01\r\n"), "EGP")
	if err != nil || len(parsed.rows) != 1 || !parsed.rows[0].preauth || parsed.rows[0].amount != 100 {
		t.Errorf("BOM/CRLF file = %+v %v", parsed, err)
	}
}

// registry is a Directory over a fixed list, as the HCX registry client
// answers once it has looked the payers up.
type registry []payer.Participant

func (r registry) Payers(context.Context) ([]payer.Participant, error) { return r, nil }
func (r registry) Lookup(_ context.Context, code string) (payer.Participant, bool, error) {
	for _, p := range r {
		if p.Code == code {
			return p, true, nil
		}
	}
	return payer.Participant{}, false, nil
}

func TestPayersJoinTheRegistryWithTheSchedules(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := NewFees(db, nil)
		loadExample(t, f, FeeLoad{Payer: "payer-misr@hcx", Version: "v1"})
		if _, _, err := f.Load(ctx, strings.NewReader("system,code,price,preauth,effective_from\nCPT,99213,1,no,2026-01-01\n"),
			FeeLoad{Payer: "gone@hcx", Name: "Old Payer", Currency: "SAR"}); err != nil {
			t.Fatal(err)
		}
		reg := registry{
			{Code: "payer-misr@hcx", Name: "Misr Insurance", Status: "Active", Roles: []string{"payor"}},
			{Code: "new@hcx", Name: "New Payer", Status: "Active", Roles: []string{"payor"}},
		}
		ls, err := f.Payers(ctx, reg, day("2026-03-01"))
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) != 3 {
			t.Fatalf("listings = %+v", ls)
		}
		gone, misr, fresh := ls[0], ls[2], ls[1]
		if gone.Code != "gone@hcx" || gone.Reachable || gone.Status != StatusUnreachable || gone.Currency != "SAR" || gone.Name != "Old Payer" || len(gone.Schedules) != 1 {
			t.Errorf("unreachable payer = %+v", gone)
		}
		if !misr.Reachable || misr.Status != "Active" || misr.Schedules[0].Version != "v1" || len(misr.PreauthRequired) != 3 {
			t.Errorf("registered payer = %+v", misr)
		}
		if fresh.Code != "new@hcx" || !fresh.Reachable || fresh.Currency != "EGP" || len(fresh.Schedules) != 0 {
			t.Errorf("payer without a schedule = %+v", fresh)
		}
		// Without a registry every payer careflow knows is unreachable.
		ls, err = f.Payers(ctx, nil, day("2026-03-01"))
		if err != nil || len(ls) != 2 || ls[0].Reachable || ls[1].Reachable {
			t.Errorf("no registry: %+v %v", ls, err)
		}
	})
}
