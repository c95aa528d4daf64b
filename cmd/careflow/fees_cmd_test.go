package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

const exampleFees = "../../examples/fee-schedule.csv"

func feesRunner(dbArgs []string) codesRun {
	return func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr strings.Builder
		code := run(context.Background(), append(append([]string{"fees"}, args...), dbArgs...), &stdout, &stderr, func(string) string { return "" })
		return code, stdout.String(), stderr.String()
	}
}

func TestFeesLoadAndList(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dbURL := filepath.Join(dir, "careflow.db")
			if d == store.Postgres {
				dbURL = storetest.NewPostgresDatabase(t)
			}
			fees := feesRunner([]string{"--data-dir", dir, "--database", dbURL, "--log-level", "warn"})

			code, out, errOut := fees(t, "load", "payer-misr@hcx", exampleFees, "--name", "مصر للتأمين", "--version", "2026.1")
			if want := "loaded fee schedule 2026.1 for payer payer-misr@hcx: 14 rows, effective from 2026-01-01, currency EGP\n"; code != 0 || out != want {
				t.Fatalf("load: exit %d\nstdout %q\nwant   %q\nstderr %s", code, out, want, errOut)
			}
			code, out, _ = fees(t, "load", "payer-misr@hcx", exampleFees, "--version=2026.1")
			if code != 0 || !strings.Contains(out, "already has fee schedule 2026.1 with this content") {
				t.Fatalf("reload: exit %d %q", code, out)
			}
			// A second payer in Saudi riyals, versioned by content.
			small := filepath.Join(dir, "small.csv")
			if err := os.WriteFile(small, []byte("system,code,price,preauth,effective_from,effective_to\nCPT,99213,300.5,no,2026-01-01,2026-12-31\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut = fees(t, "load", "--currency", "SAR", "sa-payer", small)
			if code != 0 || !strings.Contains(out, "loaded fee schedule sha256-") || !strings.HasSuffix(out, ": 1 rows, effective 2026-01-01 to 2026-12-31, currency SAR\n") {
				t.Fatalf("load SAR: exit %d %q %s", code, out, errOut)
			}

			code, out, errOut = fees(t, "list")
			if code != 0 {
				t.Fatalf("list: %d %s", code, errOut)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "PAYER") ||
				!strings.Contains(lines[1], "payer-misr@hcx  مصر للتأمين") || !strings.Contains(lines[1], "2026.1") ||
				!strings.Contains(lines[2], "sa-payer") || !strings.Contains(lines[2], "SAR") || !strings.Contains(lines[2], "2026-12-31") {
				t.Errorf("list:\n%s", out)
			}
			code, out, _ = fees(t, "list", "sa-payer")
			if code != 0 || strings.Contains(out, "payer-misr") || !strings.Contains(out, "sa-payer") {
				t.Errorf("list one payer: %d\n%s", code, out)
			}

			// What the command loaded prices through the port the journeys use.
			db, err := store.Open(context.Background(), store.Config{URL: dbURL, DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			p, ok, err := rcm.NewFees(db, nil).Price(context.Background(), db.Reader(), "payer-misr@hcx", "CPT", "33510", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
			if err != nil || !ok || p.Amount != 14500000 || p.Currency != "EGP" {
				t.Errorf("price after the command's load = %+v %v %v", p, ok, err)
			}
		})
	}
}

func TestFeesLoadRefusesABadFileWhole(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fees := feesRunner([]string{"--data-dir", dir, "--log-level", "warn"})
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("system,code,price,preauth,effective_from\nCPT,99213,1,no,2026-01-01\nCPT,99x13,1,no,2026-01-01\nCPT,99214,1.234,maybe,2026-01-01\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := fees(t, "load", "p1", bad)
	got := sentences(errOut)
	want := []string{
		bad + ": line 3: code: a CPT code starts with 4 digits",
		bad + ": line 4: price: has more decimals than EGP has (2)",
		bad + ": line 4: preauth: must be yes or no",
		"careflow fees load: " + bad + ": 3 problem(s); nothing was loaded.",
	}
	if code != 1 || out != "" || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("exit %d stdout %q\nstderr:\n%s\nwant:\n%s", code, out, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	code, out, _ = fees(t, "list")
	if code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("a refused load left something: %q", out)
	}
}

func TestFeesMistakesExit2WithOneSentence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fees := feesRunner([]string{"--data-dir", dir})
	cases := []struct {
		args []string
		want string
	}{
		{nil, "careflow fees: name a subcommand"},
		{[]string{"load", "p1"}, "careflow fees load: takes a payer and a file"},
		{[]string{"load", "p 1", exampleFees}, "careflow fees load: PAYER must be the payer's participant code"},
		{[]string{"load", "p1", exampleFees, "--currency", "ZZZ"}, "careflow fees load: flag --currency=ZZZ is invalid"},
		{[]string{"load", "p1", exampleFees, "--version"}, "careflow fees: flag --version needs a value."},
		{[]string{"list", "--name", "x"}, "careflow fees list: --name applies to fees load only."},
		{[]string{"price"}, `careflow fees: unknown subcommand "price"`},
	}
	for _, c := range cases {
		code, _, errOut := fees(t, c.args...)
		lines := sentences(errOut)
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], c.want) {
			t.Errorf("fees %v: exit %d, stderr %q, want %q", c.args, code, errOut, c.want)
		}
	}
}
