package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/terminology"
)

// codesUsage is the codes command's argument synopsis.
const codesUsage = "load SYSTEM FILE --version V [--valid-from YYYY-MM-DD] [--valid-to YYYY-MM-DD] | list"

// codeSystem is a code system as the command line names it.
type codeSystem struct {
	arg string // what the user types
	uri string
	// unloaded says what answers while no release of the system is loaded.
	unloaded string
}

// codeSystems lists the systems `codes load` accepts, in the order `codes
// list` shows them.
func codeSystems() []codeSystem {
	return []codeSystem{
		{"icd10cm", terminology.SystemICD10CM, "the built-in starter set answers"},
		{"cpt", terminology.SystemCPT, "codes are checked by format only"},
		{"hcpcs", terminology.SystemHCPCS, "codes are checked by format only"},
		{"loinc", terminology.SystemLOINC, "codes are checked by format and check digit only"},
		{"snomed", terminology.SystemSNOMED, "codes are checked by format and check digit only"},
	}
}

func codeSystemArgs() string {
	var names []string
	for _, s := range codeSystems() {
		names = append(names, s.arg)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// releaseFlags are the flags of `codes load` that describe the release.
// They are the command's own, not settings in the option table: a release
// version is not something to leave in the environment for the next load.
type releaseFlags struct {
	version        string
	from, to       time.Time
	hasFrom, hasTo bool
	given          []string // the flags given, for "load only" complaints
}

// splitCodesArgs separates the release flags from the settings (--data-dir,
// --database, ...) and the positional arguments, and checks them.
func splitCodesArgs(args []string) (rel releaseFlags, settings, positional []string, err error) {
	own, settings, positional, err := splitOwnFlags(args, "version", "valid-from", "valid-to")
	if err != nil {
		return rel, nil, nil, err
	}
	rel.given = own.given
	for _, name := range own.given {
		value := own.values[name]
		switch name {
		case "version":
			rel.version = strings.TrimSpace(value)
			if rel.version == "" {
				return rel, nil, nil, usageError{"flag --version must not be empty"}
			}
		case "valid-from", "valid-to":
			d, perr := time.Parse(time.DateOnly, value)
			if perr != nil {
				return rel, nil, nil, usageError{fmt.Sprintf("flag --%s=%s is invalid: must be a date such as 2025-10-01", name, value)}
			}
			if name == "valid-from" {
				rel.from, rel.hasFrom = d, true
			} else {
				rel.to, rel.hasTo = d, true
			}
		}
	}
	return rel, settings, positional, nil
}

// window is the validity window of the release being loaded. ICD-10-CM
// releases default to the fiscal year their version names, end by end, so
// an April update needs only --valid-from; other versions must give both
// ends. Code lists are open on any end not given.
func (rel releaseFlags) window(system string) (terminology.Window, error) {
	w := terminology.Window{From: rel.from, To: rel.to}
	if system == terminology.SystemICD10CM && (!rel.hasFrom || !rel.hasTo) {
		fy, err := terminology.DefaultICD10CMWindow(rel.version)
		if err != nil {
			return w, usageError{fmt.Sprintf("version %q is not a fiscal year, so give the window with --valid-from and --valid-to", rel.version)}
		}
		if !rel.hasFrom {
			w.From = fy.From
		}
		if !rel.hasTo {
			w.To = fy.To
		}
	}
	if err := w.Validate(); err != nil {
		return w, usageError{err.Error()}
	}
	return w, nil
}

// runCodes is `careflow codes load|list`.
func runCodes(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	rel, settings, pos, err := splitCodesArgs(args)
	if errors.Is(err, errHelp) {
		return helpFor("codes", stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "careflow codes: %s.\n", err)
		return 2
	}
	cfg, _, code, ok := configOrExit("codes", settings, stdout, stderr, getenv)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintf(stderr, "careflow codes: name a subcommand: %s.\n", codesUsage)
		return 2
	}
	switch sub := pos[0]; sub {
	case "list":
		if len(pos) > 1 {
			fmt.Fprintf(stderr, "careflow codes list: unexpected argument %q.\n", pos[1])
			return 2
		}
		if len(rel.given) > 0 {
			fmt.Fprintf(stderr, "careflow codes list: --%s applies to codes load only.\n", rel.given[0])
			return 2
		}
		return codesList(ctx, cfg, stdout, stderr)
	case "load":
		if len(pos) != 3 {
			fmt.Fprintf(stderr, "careflow codes load: takes a code system and a file; usage: careflow codes %s.\n", codesUsage)
			return 2
		}
		var system codeSystem
		for _, s := range codeSystems() {
			if s.arg == strings.ToLower(pos[1]) {
				system = s
			}
		}
		if system.uri == "" {
			fmt.Fprintf(stderr, "careflow codes load: unknown code system %q; use %s.\n", pos[1], codeSystemArgs())
			return 2
		}
		if rel.version == "" {
			fmt.Fprintln(stderr, "careflow codes load: --version is required (for ICD-10-CM the fiscal year, such as 2026).")
			return 2
		}
		w, err := rel.window(system.uri)
		if err != nil {
			fmt.Fprintf(stderr, "careflow codes load: %s.\n", err)
			return 2
		}
		return codesLoad(ctx, cfg, system, pos[2], rel.version, w, stdout, stderr, getenv)
	default:
		fmt.Fprintf(stderr, "careflow codes: unknown subcommand %q; use %s.\n", sub, codesUsage)
		return 2
	}
}

func printCodesHelp(w io.Writer) {
	fmt.Fprintf(w, `
Load flags:
  --version V
      the release's name; for ICD-10-CM the fiscal year (2026)
  --valid-from YYYY-MM-DD, --valid-to YYYY-MM-DD
      the dates of service the release is valid for, both inclusive.
      ICD-10-CM defaults to the fiscal year (2026: 2025-10-01 to 2026-09-30)
      end by end, so an April update gives --valid-from 2026-04-01; other
      systems default to open ends.

SYSTEM is %s. icd10cm reads the CMS order file
(icd10cm_order_YYYY.txt); the others read a code list, one code and an
optional display per line, comma- or tab-separated. A load is one
transaction: a bad line (reported with its number) loads nothing, and
loading a version again replaces it.
`, codeSystemArgs())
}

// codesLoad loads FILE as a release of system.
func codesLoad(ctx context.Context, cfg Config, system codeSystem, file, version string, window terminology.Window, stdout, stderr io.Writer, getenv func(string) string) int {
	failed := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "careflow codes load: %s.\n", strings.TrimSuffix(fmt.Sprintf(format, args...), "."))
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
	info, err := f.Stat()
	if err != nil {
		return failed("cannot read %s: %v", file, err)
	}
	if info.IsDir() {
		return failed("%s is a folder, not a file", file)
	}

	// An interrupted load rolls back; say so rather than die mid-line.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := newLogger(cfg, stderr)
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		return failed("cannot open the database: %v", err)
	}
	defer db.Close()
	svc := terminology.NewService(db, terminology.Options{Logger: logger})

	name, _ := terminology.SystemName(system.uri)
	size := info.Size()
	if !info.Mode().IsRegular() {
		size = 0 // a pipe or device: no total to show a percentage of
	}
	progress := newLoadProgress(stderr, isTerminal(stderr, getenv), time.Now, name+" "+version, size)
	src := &countingReader{r: f, onRead: progress.read}
	report := func(p terminology.LoadProgress) { progress.codes(p.Codes) }

	var rel terminology.Release
	if system.uri == terminology.SystemICD10CM {
		rel, err = svc.LoadICD10CM(ctx, src, version, window, report)
	} else {
		rel, err = svc.LoadCodeList(ctx, system.uri, src, terminology.CodeListOptions{Version: version, Window: window, Progress: report})
	}
	progress.finish()
	if err != nil {
		msg := err.Error()
		if e, ok := errs.As(err); ok && e.Kind != errs.Internal {
			msg = e.Message
		}
		// One transaction: whatever went wrong, the database is as it was.
		return failed("%s: %s; nothing was loaded", file, strings.TrimSuffix(msg, "."))
	}
	fmt.Fprintf(stdout, "loaded %s release %s: %d codes, valid for %s\n", name, rel.Version, rel.Codes, describeWindow(rel.Window))
	return 0
}

// codesList prints the loaded releases of every system, newest first.
func codesList(ctx context.Context, cfg Config, stdout, stderr io.Writer) int {
	logger := newLogger(cfg, stderr)
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "careflow codes list: cannot open the database: %s.\n", strings.TrimSuffix(err.Error(), "."))
		return 1
	}
	defer db.Close()
	svc := terminology.NewService(db, terminology.Options{Logger: logger})
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYSTEM\tVERSION\tVALID FROM\tVALID TO\tCODES\tLOADED")
	for _, s := range codeSystems() {
		name, _ := terminology.SystemName(s.uri)
		rels, err := svc.Releases(ctx, s.uri)
		if err != nil {
			tw.Flush()
			fmt.Fprintf(stderr, "careflow codes list: %s.\n", strings.TrimSuffix(err.Error(), "."))
			return 1
		}
		if len(rels) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\tnone loaded: %s\n", name, s.unloaded)
			continue
		}
		for _, r := range rels {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", name, r.Version, windowEnd(r.Window.From), windowEnd(r.Window.To),
				r.Codes, r.LoadedAt.UTC().Format(time.RFC3339))
		}
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "careflow codes list: cannot write the list: %v.\n", err)
		return 1
	}
	return 0
}

func windowEnd(t time.Time) string {
	if t.IsZero() {
		return "open"
	}
	return t.Format(time.DateOnly)
}

// describeWindow says in words which dates of service a release covers.
func describeWindow(w terminology.Window) string {
	switch {
	case w.From.IsZero() && w.To.IsZero():
		return "any date of service"
	case w.To.IsZero():
		return "dates of service from " + w.From.Format(time.DateOnly)
	case w.From.IsZero():
		return "dates of service through " + w.To.Format(time.DateOnly)
	}
	return "dates of service " + w.From.Format(time.DateOnly) + " to " + w.To.Format(time.DateOnly)
}

// isTerminal reports whether w is a terminal that can redraw a line.
func isTerminal(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && getenv("TERM") != "dumb"
}

// countingReader reports how many bytes have been read through it.
type countingReader struct {
	r      io.Reader
	n      int64
	onRead func(total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.onRead(c.n)
	return n, err
}

// Progress redraw intervals. On a terminal the line is redrawn in place a
// few times a second; elsewhere (a log file, CI) a plain line is written
// rarely, so a long load shows it is alive and a short one writes nothing.
const (
	progressTerminalEvery = 250 * time.Millisecond
	progressLogEvery      = 10 * time.Second
)

// loadProgress shows how far a load has come on stderr. It is called from
// the loading goroutine only (the reads and the code counts both happen
// there), so it needs no lock.
type loadProgress struct {
	*statusLine
	label string
	total int64 // file size; 0 when unknown
	bytes int64
	count int
}

func newLoadProgress(w io.Writer, terminal bool, now func() time.Time, label string, total int64) *loadProgress {
	return &loadProgress{statusLine: newStatusLine(w, terminal, now), label: label, total: total}
}

func (p *loadProgress) read(total int64) { p.bytes = total; p.show(p.line) }
func (p *loadProgress) codes(n int)      { p.count = n; p.show(p.line) }

func (p *loadProgress) line() string {
	mb := func(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }
	if p.total > 0 {
		return fmt.Sprintf("loading %s: %d%% (%s of %s MB read), %d codes", p.label,
			min(100, p.bytes*100/p.total), mb(p.bytes), mb(p.total), p.count)
	}
	return fmt.Sprintf("loading %s: %s MB read, %d codes", p.label, mb(p.bytes), p.count)
}
