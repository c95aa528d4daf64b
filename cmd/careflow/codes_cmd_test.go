package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
	"github.com/careflow/careflow/internal/terminology"
)

// The terminology package's fixtures, reused by relative path.
const termdata = "../../internal/terminology/testdata/"

// codesRun runs `careflow codes ARGS...` against one database and returns
// the exit code, stdout and stderr.
type codesRun func(t *testing.T, args ...string) (int, string, string)

func codesRunner(dbArgs []string) codesRun {
	return func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr strings.Builder
		code := run(context.Background(), append(append([]string{"codes"}, args...), dbArgs...), &stdout, &stderr, func(string) string { return "" })
		return code, stdout.String(), stderr.String()
	}
}

// sentences returns the lines of stderr that are not JSON log lines: what
// the command said to the person running it.
func sentences(stderr string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if l != "" && !strings.HasPrefix(l, "{") {
			out = append(out, l)
		}
	}
	return out
}

func TestCodesLoadAndList(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dbURL := filepath.Join(dir, "careflow.db")
			if d == store.Postgres {
				dbURL = storetest.NewPostgresDatabase(t)
			}
			codes := codesRunner([]string{"--data-dir", dir, "--database", dbURL, "--log-level", "warn"})

			loads := []struct {
				args []string
				want string
			}{
				{[]string{"load", "icd10cm", termdata + "icd10cm_order_2026.txt", "--version", "2026"},
					"loaded ICD-10-CM release 2026: 21 codes, valid for dates of service 2025-10-01 to 2026-09-30\n"},
				{[]string{"load", "icd10cm", "--version=2022", termdata + "icd10cm_order_2022.txt"},
					"loaded ICD-10-CM release 2022: 20 codes, valid for dates of service 2021-10-01 to 2022-09-30\n"},
				// An April update names its window; the end defaults to the
				// fiscal year's when the version is one.
				{[]string{"load", "icd10cm", "testdata/icd10cm_order_april.txt", "--version", "2026-april", "--valid-from", "2026-04-01", "--valid-to", "2026-09-30"},
					"loaded ICD-10-CM release 2026-april: 7 codes, valid for dates of service 2026-04-01 to 2026-09-30\n"},
				{[]string{"load", "cpt", termdata + "cpt_codes.csv", "--version", "2026", "--valid-from", "2026-01-01"},
					"loaded CPT release 2026: 4 codes, valid for dates of service from 2026-01-01\n"},
				{[]string{"load", "HCPCS", termdata + "hcpcs_2026.tsv", "--version", "2026-Q1"},
					"loaded HCPCS Level II release 2026-Q1: 4 codes, valid for any date of service\n"},
				// Loading a release again replaces it: same count, one row.
				{[]string{"load", "icd10cm", termdata + "icd10cm_order_2026.txt", "--version", "2026"},
					"loaded ICD-10-CM release 2026: 21 codes, valid for dates of service 2025-10-01 to 2026-09-30\n"},
			}
			for _, l := range loads {
				code, out, errOut := codes(t, l.args...)
				if code != 0 || out != l.want {
					t.Fatalf("codes %s: exit %d\nstdout %q\nwant   %q\nstderr %s", strings.Join(l.args, " "), code, out, l.want, errOut)
				}
				if s := sentences(errOut); len(s) != 0 {
					t.Errorf("codes %s wrote %q to stderr (not a terminal: no progress for a short load)", strings.Join(l.args, " "), s)
				}
			}

			// A bad line loads nothing and names the line.
			code, out, errOut := codes(t, "load", "icd10cm", "testdata/icd10cm_order_bad_line.txt", "--version", "2027")
			s := sentences(errOut)
			if code != 1 || out != "" || len(s) != 1 || !strings.Contains(s[0], "line 3") || !strings.Contains(s[0], "nothing was loaded") || !strings.HasSuffix(s[0], ".") {
				t.Fatalf("bad line: exit %d, stdout %q, stderr %q", code, out, errOut)
			}

			code, out, errOut = codes(t, "list")
			if code != 0 {
				t.Fatalf("list: exit %d %s", code, errOut)
			}
			rows := regexp.MustCompile(`  +`).ReplaceAllString(out, "|")
			for _, want := range []string{
				"SYSTEM|VERSION|VALID FROM|VALID TO|CODES|LOADED\n",
				"ICD-10-CM|2026-april|2026-04-01|2026-09-30|7|",
				"ICD-10-CM|2026|2025-10-01|2026-09-30|21|",
				"ICD-10-CM|2022|2021-10-01|2022-09-30|20|",
				"CPT|2026|2026-01-01|open|4|",
				"HCPCS Level II|2026-Q1|open|open|4|",
				"LOINC|-|-|-|-|none loaded: codes are checked by format and check digit only\n",
				"SNOMED CT|-|-|-|-|none loaded",
			} {
				if !strings.Contains(rows, want) {
					t.Errorf("list lacks %q:\n%s", want, out)
				}
			}
			if strings.Count(rows, "ICD-10-CM|") != 3 || strings.Contains(out, "2027") {
				t.Errorf("list should hold three ICD-10-CM releases and not the failed 2027:\n%s", out)
			}
			if i, j := strings.Index(rows, "|2026-april|"), strings.Index(rows, "|2022|"); i > j {
				t.Errorf("list is not newest first:\n%s", out)
			}

			// The stored releases answer as loaded: the April update wins
			// from April on, and only there.
			db, err := store.Open(context.Background(), store.Config{URL: dbURL, DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			svc := terminology.NewService(db, terminology.Options{})
			day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
			for _, c := range []struct {
				code, date, version string
				valid               bool
			}{
				{"J45.909", "2026-05-01", "2026-april", true},
				{"J45.909", "2026-01-15", "2026", false},
				{"A00.0", "2026-01-15", "2026", true},
				{"M54.5", "2022-01-15", "2022", false}, // a header since FY2022
			} {
				v, err := svc.ValidateCode(context.Background(), terminology.SystemICD10CM, c.code, terminology.ValidateOptions{Date: day(c.date)})
				if err != nil {
					t.Fatal(err)
				}
				if v.Valid != c.valid || v.Version != c.version {
					t.Errorf("%s on %s: valid %v in %q, want %v in %q (%s)", c.code, c.date, v.Valid, v.Version, c.valid, c.version, v.Message)
				}
			}
			rels, err := svc.Releases(context.Background(), terminology.SystemICD10CM)
			if err != nil || len(rels) != 3 {
				t.Fatalf("releases %v %v", rels, err)
			}
		})
	}
}

func TestCodesMistakesExit2WithOneSentence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	codes := codesRunner([]string{"--data-dir", dir})
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", nil, "name a subcommand"},
		{"unknown subcommand", []string{"unload"}, `unknown subcommand "unload"`},
		{"unknown system", []string{"load", "icd9", "x.txt", "--version", "1"}, `unknown code system "icd9"; use icd10cm, cpt, hcpcs, loinc or snomed`},
		{"no version", []string{"load", "icd10cm", termdata + "icd10cm_order_2026.txt"}, "--version is required"},
		{"no file", []string{"load", "icd10cm", "--version", "2026"}, "takes a code system and a file"},
		{"version without a value", []string{"load", "icd10cm", "f", "--version"}, "--version needs a value"},
		{"version twice", []string{"load", "icd10cm", "f", "--version", "1", "--version", "2"}, "--version is given twice"},
		{"bad date", []string{"load", "cpt", "f", "--version", "1", "--valid-from", "1/10/2025"}, "--valid-from=1/10/2025 is invalid"},
		{"window ends before it starts", []string{"load", "cpt", "f", "--version", "1", "--valid-from", "2026-01-01", "--valid-to", "2025-12-31"}, "ends (2025-12-31) before it starts"},
		{"icd10cm version that is no fiscal year", []string{"load", "icd10cm", "f", "--version", "2026-april", "--valid-from", "2026-04-01"}, "not a fiscal year"},
		{"list with a load flag", []string{"list", "--version", "2026"}, "--version applies to codes load only"},
		{"list with an argument", []string{"list", "icd10cm"}, `unexpected argument "icd10cm"`},
		{"unknown setting", []string{"list", "--colour", "red"}, "unknown flag --colour"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := codes(t, c.args...)
			if code != 2 || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2", code, out, errOut)
			}
			msg := strings.TrimSpace(errOut)
			if !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") || !strings.HasSuffix(msg, ".") {
				t.Fatalf("stderr %q: want one sentence naming %q", errOut, c.want)
			}
		})
	}
}

func TestCodesLoadFailuresExit1(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	codes := codesRunner([]string{"--data-dir", dir})
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"a missing file", []string{"load", "icd10cm", "testdata/no-such-file.txt", "--version", "2026"}, "cannot open testdata/no-such-file.txt: no such file or directory"},
		{"a folder", []string{"load", "cpt", "testdata", "--version", "2026"}, "testdata is a folder"},
		{"an order file loaded as a code list", []string{"load", "loinc", termdata + "icd10cm_order_2026.txt", "--version", "2.80"}, "line 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := codes(t, c.args...)
			s := sentences(errOut)
			if code != 1 || out != "" || len(s) != 1 || !strings.Contains(s[0], c.want) || !strings.HasPrefix(s[0], "careflow codes load: ") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and one sentence naming %q", code, out, errOut, c.want)
			}
		})
	}
}

func TestCodesHelpNamesTheLoadFlagsAndSettings(t *testing.T) {
	t.Parallel()
	code, out, _ := codesRunner(nil)(t, "load", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--version V", "--valid-from", "--data-dir", "--database", "CAREFLOW_DATABASE", "icd10cm, cpt, hcpcs, loinc or snomed"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
}

// fakeClock advances only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time             { return c.t }
func (c *fakeClock) add(d time.Duration)        { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock                  { return &fakeClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)} }
func (p *loadProgress) feed(bytes int64, n int) { p.read(bytes); p.codes(n) }

func TestProgressOffATerminalWritesARareLine(t *testing.T) {
	t.Parallel()
	var w strings.Builder
	clock := newFakeClock()
	p := newLoadProgress(&w, false, clock.now, "ICD-10-CM 2026", 1000<<10)
	for i := range 100 { // a fast load: many updates, no time passing
		p.feed(int64(i)<<10, i*50)
	}
	if w.Len() != 0 {
		t.Fatalf("a short load wrote %q", w.String())
	}
	for i := range 40 { // a slow load: an update every second for 40s
		clock.add(time.Second)
		p.feed(int64(100+i*20)<<10, 5000+i*100)
	}
	p.finish()
	lines := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
	if len(lines) != 4 || strings.Contains(w.String(), "\r") {
		t.Fatalf("40 seconds off a terminal wrote %d lines, want 4 plain lines: %q", len(lines), w.String())
	}
	if !regexp.MustCompile(`^loading ICD-10-CM 2026: 2\d% \(0\.3 of 1\.0 MB read\), 5\d00 codes$`).MatchString(lines[0]) {
		t.Errorf("first line %q", lines[0])
	}
}

func TestProgressOnATerminalRedrawsOneLine(t *testing.T) {
	t.Parallel()
	var w strings.Builder
	clock := newFakeClock()
	p := newLoadProgress(&w, true, clock.now, "SNOMED CT 20260301", 0)
	for i := range 100 { // ten seconds in 100 ms steps
		clock.add(100 * time.Millisecond)
		p.feed(int64(i+1)<<20, (i+1)*1000)
	}
	redraws := strings.Count(w.String(), "\r\033[K")
	if redraws < 30 || redraws > 40 || strings.Contains(w.String(), "\n") {
		t.Fatalf("10 s on a terminal redrew %d times (want at most 4 a second, on one line): %q", redraws, w.String())
	}
	if !regexp.MustCompile(`\r\x1b\[Kloading SNOMED CT 20260301: 9\d\.0 MB read, 9\d000 codes$`).MatchString(w.String()) {
		t.Errorf("last line without a known size: %q", w.String()[strings.LastIndex(w.String(), "\r"):])
	}
	p.finish()
	if !strings.HasSuffix(w.String(), "\r\033[K") {
		t.Errorf("finish did not clear the line")
	}
}
