package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/rcm"
)

// feesUsage is the fees command's argument synopsis.
const feesUsage = `load PAYER FILE [--currency EGP] [--name "..."] [--version V] | list [PAYER]`

// runFees is `careflow fees load|list`: payers' fee schedules, loaded from
// CSV straight into the database (internal/rcm, fees_load.go describes the
// file).
func runFees(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	own, settings, pos, err := splitOwnFlags(args, "currency", "name", "version")
	if errors.Is(err, errHelp) {
		return helpFor("fees", stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "careflow fees: %s.\n", err)
		return 2
	}
	cfg, _, code, ok := configOrExit("fees", settings, stdout, stderr, getenv)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintf(stderr, "careflow fees: name a subcommand: %s.\n", feesUsage)
		return 2
	}
	switch sub := pos[0]; sub {
	case "list":
		if len(pos) > 2 {
			fmt.Fprintf(stderr, "careflow fees list: takes at most one payer; usage: careflow fees %s.\n", feesUsage)
			return 2
		}
		if len(own.given) > 0 {
			fmt.Fprintf(stderr, "careflow fees list: --%s applies to fees load only.\n", own.given[0])
			return 2
		}
		payer := ""
		if len(pos) == 2 {
			payer = pos[1]
		}
		return feesList(ctx, cfg, payer, stdout, stderr)
	case "load":
		if len(pos) != 3 {
			fmt.Fprintf(stderr, "careflow fees load: takes a payer and a file; usage: careflow fees %s.\n", feesUsage)
			return 2
		}
		if !rcm.ValidPayerCode(pos[1]) {
			fmt.Fprintln(stderr, "careflow fees load: PAYER must be the payer's participant code (letters, digits and @ . _ : -).")
			return 2
		}
		l := rcm.FeeLoad{Payer: pos[1], Version: own.values["version"], Currency: own.values["currency"], Name: own.values["name"]}
		for _, name := range own.given {
			if strings.TrimSpace(own.values[name]) == "" {
				fmt.Fprintf(stderr, "careflow fees load: flag --%s must not be empty.\n", name)
				return 2
			}
		}
		if l.Currency != "" {
			if _, err := rcm.ParseCurrency(l.Currency); err != nil {
				fmt.Fprintf(stderr, "careflow fees load: flag --currency=%s is invalid: must be an ISO 4217 currency code such as EGP.\n", l.Currency)
				return 2
			}
		}
		return feesLoad(ctx, cfg, l, pos[2], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "careflow fees: unknown subcommand %q; use %s.\n", sub, feesUsage)
		return 2
	}
}

func printFeesHelp(w io.Writer) {
	fmt.Fprintf(w, `
Load flags:
  --currency CODE
      the payer's currency (ISO 4217); rows without a currency are priced
      in it. Default: the payer's current one, EGP for a new payer.
  --name "..."
      the payer's display name (Arabic or Latin), shown where the
      registry has none.
  --version V
      the schedule version's name; default sha256- and 16 hex digits of
      the file's content.

FILE is CSV, UTF-8, its first line naming the columns in any order:
system (CPT, HCPCS or a local system's URI), code, description (optional),
price (a decimal in the row's currency, at most its decimals), currency
(optional, ISO 4217), preauth (yes or no), effective_from (YYYY-MM-DD),
effective_to (optional, inclusive). See examples/fee-schedule.csv.

A load is one transaction: every bad row is reported with its line number
and nothing is loaded. Versions are kept: a code is priced on a date of
service by the newest load with a row effective then. Loading the same
file under the same version again changes nothing.
`)
}

func feesLoad(ctx context.Context, cfg Config, l rcm.FeeLoad, file string, stdout, stderr io.Writer) int {
	failed := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "careflow fees load: %s.\n", strings.TrimSuffix(fmt.Sprintf(format, args...), "."))
		return 1
	}
	f, err := os.Open(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return failed("cannot open %s: %v", file, err)
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.IsDir() {
		return failed("%s is a folder, not a file", file)
	}
	db, err := openDatabase(ctx, cfg, newLogger(cfg, stderr))
	if err != nil {
		return failed("cannot open the database: %v", err)
	}
	defer db.Close()
	fees := rcm.NewFees(db, time.Now)
	v, loaded, err := fees.Load(ctx, f, l)
	if err != nil {
		var fe *rcm.FeeFileError
		if errors.As(err, &fe) {
			// Every problem on its own line, then the verdict.
			for _, p := range fe.Problems {
				fmt.Fprintf(stderr, "%s: %s\n", file, p)
			}
			return failed("%s: %d problem(s); nothing was loaded", file, len(fe.Problems))
		}
		msg := err.Error()
		if e, ok := errs.As(err); ok && e.Kind != errs.Internal {
			msg = e.Message
			if e.Field != "" {
				msg = "--" + e.Field + ": " + msg
			}
		}
		return failed("%s: %s; nothing was loaded", file, strings.TrimSuffix(msg, "."))
	}
	p, _, err := fees.Payer(ctx, l.Payer)
	if err != nil {
		return failed("%v", err)
	}
	if !loaded {
		fmt.Fprintf(stdout, "payer %s already has fee schedule %s with this content (loaded %s); nothing changed\n",
			l.Payer, v.Version, v.LoadedAt.UTC().Format(time.RFC3339))
		return 0
	}
	fmt.Fprintf(stdout, "loaded fee schedule %s for payer %s: %d rows, effective %s, currency %s\n",
		v.Version, l.Payer, v.Items, describePeriod(v.EffectiveFrom, v.EffectiveTo), p.Currency)
	return 0
}

func describePeriod(from, to string) string {
	if to == "" {
		return "from " + from
	}
	return from + " to " + to
}

// feesList prints the payers careflow has settings for and their schedule
// versions, newest first.
func feesList(ctx context.Context, cfg Config, payer string, stdout, stderr io.Writer) int {
	db, err := openDatabase(ctx, cfg, newLogger(cfg, stderr))
	if err != nil {
		fmt.Fprintf(stderr, "careflow fees list: cannot open the database: %s.\n", strings.TrimSuffix(err.Error(), "."))
		return 1
	}
	defer db.Close()
	fees := rcm.NewFees(db, time.Now)
	payers, err := fees.PayerSettingsAll(ctx)
	if err == nil && payer != "" {
		kept := payers[:0]
		for _, p := range payers {
			if p.Code == payer {
				kept = append(kept, p)
			}
		}
		payers = kept
		if len(payers) == 0 {
			fmt.Fprintf(stderr, "careflow fees list: no fee schedule is loaded for payer %s.\n", payer)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "careflow fees list: %s.\n", strings.TrimSuffix(err.Error(), "."))
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PAYER\tNAME\tCURRENCY\tVERSION\tROWS\tEFFECTIVE FROM\tEFFECTIVE TO\tLOADED")
	for _, p := range payers {
		vs, err := fees.Schedules(ctx, p.Code)
		if err != nil {
			tw.Flush()
			fmt.Fprintf(stderr, "careflow fees list: %s.\n", strings.TrimSuffix(err.Error(), "."))
			return 1
		}
		name := p.Name
		if name == "" {
			name = "-"
		}
		for _, v := range vs {
			to := v.EffectiveTo
			if to == "" {
				to = "open"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Code, name, p.Currency, v.Version, v.Items, v.EffectiveFrom, to, v.LoadedAt.UTC().Format(time.RFC3339))
		}
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "careflow fees list: cannot write the list: %v.\n", err)
		return 1
	}
	return 0
}
