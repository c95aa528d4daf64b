package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"golang.org/x/term"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/record"
)

// importUsage is the import command's argument synopsis.
const importUsage = "[--batch-size N] FILE|DIR..."

// How the audit log names an import: the actor and role are the command,
// the purpose is healthcare operations.
const (
	importActor   = access.ImportActor
	importRole    = access.ImportRole
	importPurpose = access.ImportPurpose
)

// Batch sizes: resources per batch Bundle when reading NDJSON or a Bundle
// that is not a request. Each resource of a batch commits alone, so the
// size bounds memory and how much an interrupt leaves unread, not a
// transaction.
const (
	defaultImportBatch = 500
	maxImportBatch     = 10000
)

// splitImportArgs separates --batch-size, the command's own flag, from the
// settings (--data-dir, --database, ...) and the paths. Flags may come
// anywhere; every careflow flag takes a value, so a flag without "="
// consumes the next argument.
func splitImportArgs(args []string) (batch int, settings, paths []string, err error) {
	batch = defaultImportBatch
	given := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			paths = append(paths, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			paths = append(paths, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			return 0, nil, nil, errHelp
		}
		if !hasValue && i+1 < len(args) && !(name == "batch-size" && strings.HasPrefix(args[i+1], "-")) {
			value, hasValue = args[i+1], true
			i++
		}
		if name != "batch-size" {
			settings = append(settings, "--"+name)
			if hasValue {
				settings = append(settings, value)
			}
			continue
		}
		if !hasValue {
			return 0, nil, nil, usageError{"flag --batch-size needs a value"}
		}
		if given {
			return 0, nil, nil, usageError{"flag --batch-size is given twice"}
		}
		given = true
		n, perr := strconv.Atoi(value)
		if perr != nil || n < 1 || n > maxImportBatch {
			return 0, nil, nil, usageError{fmt.Sprintf("flag --batch-size=%s is invalid: must be a whole number from 1 to %d", value, maxImportBatch)}
		}
		batch = n
	}
	return batch, settings, paths, nil
}

func printImportHelp(w io.Writer) {
	fmt.Fprintf(w, `
Import flags:
  --batch-size N
      resources per batch when reading NDJSON or a Bundle that is not a
      transaction or batch (default %d, at most %d)

Each FILE is read by its name: .json holds one resource or Bundle, .ndjson
holds FHIR Bulk Data (one resource per line); either may be gzip-compressed
(.json.gz, .ndjson.gz). A DIR is read in name order, sub-folders included,
skipping other files.

A transaction Bundle is one transaction, all or nothing, exactly as a POST
to /fhir/R4 (urn:uuid and conditional references resolved); a transaction
whose conditional reference matches nothing yet is retried after the other
files. A batch Bundle runs as a batch. Any other Bundle (collection,
document, searchset...) is loaded as batches of its entries' resources, and
a single resource is one write. Resources with an id are written as PUT
Type/id, keeping the id, so references between the files of a bulk export
resolve and importing again updates them; resources without one are
created anew each time (an entry whose fullUrl is urn:uuid:X is stored with
id X, and references to it are rewritten).

Every write is validated, encrypted and indexed as through the API, and
recorded in the audit log inside its own transaction:
  actor %s, role %s, purpose %s, one request id per import.
It runs beside careflow serve on the same database; give it the servers'
settings. Ctrl-C stops after the batch under way. Exit 0 when everything
was imported, 1 when anything failed (each failure is listed with its file
and line or entry), 2 for a mistake on the command line.
`, defaultImportBatch, maxImportBatch, importActor, importRole, importPurpose)
}

// runImport is `careflow import FILE|DIR...`.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	batch, settings, paths, err := splitImportArgs(args)
	if errors.Is(err, errHelp) {
		return helpFor("import", stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "careflow import: %s.\n", err)
		return 2
	}
	cfg, rest, code, ok := configOrExit("import", settings, stdout, stderr, getenv)
	if !ok {
		return code
	}
	paths = append(paths, rest...)
	if len(paths) == 0 {
		fmt.Fprintf(stderr, "careflow import: name the files or folders to import; usage: careflow import %s.\n", importUsage)
		return 2
	}
	files, skipped, err := collectImportFiles(paths)
	if err != nil {
		fmt.Fprintf(stderr, "careflow import: %s.\n", err)
		return 2
	}

	terminal := isTerminal(stderr, getenv)
	width := 0
	if f, ok := stderr.(*os.File); ok && terminal {
		width, _, _ = term.GetSize(int(f.Fd()))
	}
	progress := newImportProgress(stderr, terminal, width, time.Now, files)
	const listSkipped = 20
	for i, s := range skipped {
		if i == listSkipped {
			progress.println(fmt.Sprintf("careflow import: skipping %d more files that are not .json or .ndjson", len(skipped)-listSkipped))
			break
		}
		progress.println(fmt.Sprintf("careflow import: skipping %s: not a .json or .ndjson file", s))
	}
	if len(files) == 0 {
		fmt.Fprintf(stdout, "nothing to import: no .json or .ndjson files in %s\n", strings.Join(paths, ", "))
		return 0
	}

	// An interrupt stops the import between two requests. The database
	// work itself runs on a context the signal does not cancel, so the
	// batch under way commits (each entry with its audit entry) instead of
	// failing entry by entry.
	stopCtx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	work := context.WithoutCancel(ctx)

	logger := newLogger(cfg, progress)
	failed := func(format string, args ...any) int {
		progress.finish()
		fmt.Fprintf(stderr, "careflow import: %s.\n", strings.TrimSuffix(fmt.Sprintf(format, args...), "."))
		return 1
	}
	db, err := openDatabase(stopCtx, cfg, logger)
	if err != nil {
		return failed("cannot open the database: %v", err)
	}
	defer db.Close()
	rec, stopKeys, err := openRecord(stopCtx, cfg, db, logger)
	if err != nil {
		return failed("cannot open the PHI key ring: %v", err)
	}
	defer stopKeys()
	auditLog, err := openAuditLog(stopCtx, cfg, db, logger)
	if err != nil {
		return failed("cannot open the audit log: %v", err)
	}
	policy, err := loadPolicy(cfg)
	if err != nil {
		return failed("%v", err)
	}

	imp := &importer{
		rec:      rec,
		guard:    (&access.Services{Policy: policy, Audit: auditLog, Logger: logger}).For(access.Importer(newRunID())),
		batch:    batch,
		progress: progress,
		work:     work,
		stop:     stopCtx,
	}
	drawCtx, stopDrawing := context.WithCancel(work)
	var drawing sync.WaitGroup
	drawing.Add(2)
	go func() { defer drawing.Done(); progress.run(drawCtx) }()
	go func() {
		defer drawing.Done()
		// Say at once that the interrupt was heard; a second one ends
		// the process the default way (the open transaction rolls back).
		select {
		case <-stopCtx.Done():
			if ctx.Err() == nil {
				progress.println("careflow import: interrupted; stopping after the batch under way (interrupt again to abort it)")
			}
			stopSignals()
		case <-drawCtx.Done():
		}
	}()
	started := time.Now()
	imp.importAll(files)
	elapsed := time.Since(started)
	stopDrawing()
	drawing.Wait()
	progress.finish()

	// Close signs a checkpoint over everything the import appended, so
	// `careflow audit verify` covers it at once.
	closeErr := auditLog.Close(work)
	imp.summary(stdout, len(files), len(skipped), elapsed)
	code = 0
	if imp.t.failed > 0 || imp.t.failedFiles > 0 || imp.stoppedAt != "" || imp.fatal != nil {
		code = 1
	}
	if imp.fatal != nil {
		fmt.Fprintf(stderr, "careflow import: stopped: %s.\n", strings.TrimSuffix(errorMessage(imp.fatal), "."))
	}
	if closeErr != nil {
		fmt.Fprintf(stderr, "careflow import: closing the audit log: %v.\n", closeErr)
		code = 1
	}
	return code
}

// newRunID is the import's request id: time-ordered, so imports sort in
// the order they ran.
func newRunID() string {
	u, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return u.String()
}

// The import's guard is an access.Guard for the importer (access.Importer).
// The command works on the database directly, with the operator's own
// access to it, so the guard allows every record the server would serve to
// someone: a type the access policy does not serve is refused as the API
// refuses it (not-supported), and so is a record naming no patient of a
// type no role may read without one, which the API refuses as
// unreachable_record; an import stores nothing the API could not give
// back. What it adds is the audit: each write is appended to the audit log
// inside the write's transaction, so a record and its entry commit or roll
// back together. Reads (a conditional create that found its resource, a
// GET entry of a Bundle) are decided inside a transaction too, where a
// separate append cannot run (SQLite has one writer), so they are kept and
// appended (Flush) when the request is done.

// importTally counts what an import did.
type importTally struct {
	files, failedFiles                   int
	created, updated, unchanged, deleted int
	failed                               int
	retried                              int // transactions retried after the other files
}

// importer runs the requests of every file through the record, reporting
// as it goes.
type importer struct {
	rec      *record.Service
	guard    *access.Guard
	batch    int
	progress *importProgress
	work     context.Context // the database work; an interrupt does not cancel it
	stop     context.Context // done when the import is to stop between requests

	t importTally
	// done is the last place fully imported ("data/Observation.ndjson
	// line 1500"); stoppedAt is set when an interrupt ended the import.
	done, stoppedAt string
	notRead         int
	fatal           error // the audit log failed: nothing more may be written
}

// deferral is a transaction put off until other files are in: what it
// failed with, how many entries it has, and how many writes the import had
// made when it failed (retrying is pointless until that number moves).
type deferral struct {
	file    int
	failure importFailure
	entries int
	writes  int
}

// writes counts the records written so far.
func (t importTally) writes() int { return t.created + t.updated + t.deleted }

// importAll imports the files in order, then retries the transactions
// that failed because a conditional reference matched nothing: the
// resource may come from a later file (Synthea writes its practitioners
// and organisations into files that sort after the patients'). Retries go
// on while a pass gets any of them in.
func (imp *importer) importAll(files []importFile) {
	var waiting []deferral
	for i, f := range files {
		if imp.halted() {
			imp.notRead = len(files) - i
			return
		}
		if d, ok := imp.importFile(i, f, true); ok {
			waiting = append(waiting, d)
		}
	}
	if len(waiting) > 0 {
		imp.progress.startRetry()
	}
	for len(waiting) > 0 {
		var still []deferral
		for j, d := range waiting {
			if imp.halted() {
				imp.notRead = len(waiting) - j
				return
			}
			if imp.t.writes() == d.writes {
				still = append(still, d) // nothing new to match since it failed
				continue
			}
			imp.t.retried++
			if again, ok := imp.importFile(d.file, files[d.file], true); ok {
				still = append(still, again)
			}
		}
		if len(still) == len(waiting) {
			// No progress: what they wait for is in none of the files.
			for _, d := range still {
				imp.t.files++
				imp.t.failed += d.entries
				imp.report(d.failure)
			}
			return
		}
		waiting = still
	}
}

// halted reports whether the import must stop before the next request,
// and notes where it stopped.
func (imp *importer) halted() bool {
	if imp.fatal != nil {
		return true
	}
	if imp.stop.Err() != nil {
		if imp.stoppedAt == "" {
			imp.stoppedAt = imp.done
			if imp.stoppedAt == "" {
				imp.stoppedAt = "nothing"
			}
		}
		return true
	}
	return false
}

// importFile imports one file. A transaction that may wait for later
// files and fails on a conditional reference is returned as deferred.
func (imp *importer) importFile(i int, f importFile, mayDefer bool) (deferral, bool) {
	imp.progress.startFile(i, f)
	var counts fileCounts
	var deferred *deferral
	cut := false
	err := readImportFile(f, imp.batch, imp.progress.read, func(req importRequest) bool {
		if imp.halted() {
			cut = true
			return false
		}
		if req.asSent {
			imp.progress.entries(len(req.origins))
		}
		if d := imp.send(f, req, mayDefer, &counts); d != nil {
			d.file, d.entries, d.writes = i, len(req.origins), imp.t.writes()
			deferred = d
			return false
		}
		imp.done = f.path
		if req.through != "" {
			imp.done += " " + req.through
		}
		return true
	})
	switch {
	case deferred != nil:
		imp.progress.endFile("a conditional reference matches nothing yet; trying again after the other files")
		return *deferred, true
	case cut:
		imp.progress.endFile("interrupted")
		return deferral{}, false
	case err != nil:
		imp.t.failedFiles++
		var ff fileFailure
		if errors.As(err, &ff) {
			ff.f.file = f.path
			imp.report(ff.f)
		} else {
			imp.report(importFailure{file: f.path, msg: err.Error()})
		}
		imp.progress.endFile("not imported: " + strings.TrimSuffix(err.Error(), "."))
		return deferral{}, false
	}
	imp.t.files++
	imp.progress.endFile(counts.String())
	return deferral{}, false
}

// fileCounts is one file's outcome, for its progress line.
type fileCounts struct{ created, updated, unchanged, failed int }

func (c fileCounts) String() string {
	s := fmt.Sprintf("%d created, %d updated", c.created, c.updated)
	if c.unchanged > 0 {
		s += fmt.Sprintf(", %d already present", c.unchanged)
	}
	return s + fmt.Sprintf(", %d failed", c.failed)
}

// send runs one request and reports its outcome entry by entry.
func (imp *importer) send(f importFile, req importRequest, mayDefer bool, c *fileCounts) *deferral {
	if !req.asSent && len(req.origins) > 1 && errs.Is(imp.rec.CheckLimits(req.body, "Bundle"), errs.TooLarge) {
		// The record refuses a batch over a limit whole; in a batch
		// careflow built from separate lines or entries, the resource over
		// it must fail alone, as it would in a batch of its own.
		if d, ok := imp.sendEach(f, req, mayDefer, c); ok {
			return d
		}
	}
	return imp.sendRequest(f, req, mayDefer, c)
}

// sendRequest runs one request as it is.
func (imp *importer) sendRequest(f importFile, req importRequest, mayDefer bool, c *fileCounts) *deferral {
	// Failures are listed in file order once the request is done: lines
	// refused before it was sent among those the record refused.
	fails := append([]importFailure(nil), req.rejected...)
	defer func() {
		sort.SliceStable(fails, func(i, j int) bool { return fails[i].at < fails[j].at })
		for _, fl := range fails {
			fl.file = f.path
			imp.report(fl)
		}
	}()
	imp.t.failed += len(req.rejected)
	c.failed += len(req.rejected)
	if req.body == nil {
		imp.progress.done(0, len(req.rejected))
		return nil
	}
	res, err := imp.rec.ProcessBundle(imp.work, imp.guard, req.body)
	if ferr := imp.guard.Flush(imp.work); ferr != nil && imp.fatal == nil {
		imp.fatal = ferr
	}
	if err != nil {
		fail := importFailure{file: f.path}
		fail.msg, fail.issues = describeImportError(err)
		if req.transaction {
			fail.msg = "the transaction was rolled back, nothing in this file was imported: " + fail.msg
			if mayDefer && errs.Is(err, errs.PreconditionFailed) {
				return &deferral{failure: fail}
			}
		} else if len(req.origins) > 0 {
			fail.where, fail.at = spanOf(req.origins), req.origins[0].at()
			renameEntryPaths(fail.issues, req)
		}
		fails = append(fails, fail)
		imp.t.failed += len(req.origins)
		c.failed += len(req.origins)
		imp.progress.done(0, len(req.rejected)+len(req.origins))
		if errs.Is(err, errs.Unavailable) && imp.fatal == nil {
			imp.fatal = err
		}
		return nil
	}
	ok, bad := 0, len(req.rejected)
	for k, er := range res.Entries {
		o := entryOrigin{entry: k, typ: ""}
		if k < len(req.origins) {
			o = req.origins[k]
		}
		switch {
		case er.Err != nil:
			bad++
			imp.t.failed++
			c.failed++
			fail := importFailure{file: f.path, at: o.at(), where: o.where()}
			fail.msg, fail.issues = describeImportError(er.Err)
			fail.msg = renameEntry(fail.msg, k, o)
			for i := range fail.issues {
				for j, e := range fail.issues[i].Expression {
					fail.issues[i].Expression[j] = entryPath(e, k, o, req.asSent)
				}
			}
			fails = append(fails, fail)
			if errs.Is(er.Err, errs.Unavailable) && imp.fatal == nil {
				imp.fatal = er.Err
			}
			continue
		case er.Deleted:
			imp.t.deleted++
		case er.Record == nil:
			// A read or search entry: nothing written.
		case er.Created:
			imp.t.created++
			c.created++
		case er.Method == "POST":
			// A conditional create whose resource was already stored.
			imp.t.unchanged++
			c.unchanged++
		default:
			imp.t.updated++
			c.updated++
		}
		ok++
	}
	imp.progress.done(ok, bad)
	return nil
}

// sendEach sends each entry of a batch careflow built as a batch of its
// own; ok is false when the batch cannot be split.
func (imp *importer) sendEach(f importFile, req importRequest, mayDefer bool, c *fileCounts) (d *deferral, ok bool) {
	b, err := fhir.ParseBundle(req.body)
	if err != nil || len(b.Entry) != len(req.origins) {
		return nil, false
	}
	for k, e := range b.Entry {
		entry, err := json.Marshal(e)
		if err != nil {
			return nil, false
		}
		one := importRequest{body: append(append([]byte(`{"resourceType":"Bundle","type":"batch","entry":[`), entry...), "]}"...), origins: req.origins[k : k+1 : k+1]}
		if k == 0 {
			one.rejected = req.rejected
		}
		if d := imp.sendRequest(f, one, mayDefer, c); d != nil {
			return d, true
		}
	}
	return nil, true
}

// spanOf names the lines or entries a request covered.
func spanOf(origins []entryOrigin) string {
	first, last := origins[0], origins[len(origins)-1]
	switch {
	case first.line > 0 && first.line == last.line:
		return first.where()
	case first.line > 0:
		return fmt.Sprintf("lines %d-%d", first.line, last.line)
	case first.entry >= 0 && first.entry != last.entry:
		return fmt.Sprintf("entries %d-%d", first.entry, last.entry)
	}
	return first.where()
}

// describeImportError is what a failure says: the record's message for
// the person who sent the data (never PHI: the record's messages and the
// validator's diagnostics name elements, never values) and the issues of
// a validation failure.
func describeImportError(err error) (string, []fhir.OutcomeIssue) {
	var issues []fhir.OutcomeIssue
	var ie *record.IssuesError
	if errors.As(err, &ie) {
		issues = errorIssues(ie.Issues)
	}
	msg := errorMessage(err)
	if e, ok := errs.As(err); ok && e.Kind != errs.Internal && e.Field != "" {
		issues = append(issues, fhir.OutcomeIssue{Severity: fhir.SeverityError, Diagnostics: "the element at fault", Expression: []string{e.Field}})
	}
	return msg, issues
}

// errorMessage is an error's message for a person: an *errs.Error's own
// message, or (an internal failure) the whole chain, which careflow keeps
// free of PHI.
func errorMessage(err error) string {
	if e, ok := errs.As(err); ok && e.Kind != errs.Internal {
		return e.Message
	}
	return err.Error()
}

var entryNumber = regexp.MustCompile(`^entry (\d+)(: | )`)

// renameEntry rewrites a batch entry's message, which numbers the entry
// within the request careflow built, for a report that already says the
// line or entry of the file: "entry 3: the id ..." loses its prefix, and
// "entry 3 is not valid FHIR R4" becomes "the Observation is not valid
// FHIR R4".
func renameEntry(msg string, k int, o entryOrigin) string {
	m := entryNumber.FindStringSubmatch(msg)
	if m == nil || m[1] != strconv.Itoa(k) {
		return msg
	}
	rest := msg[len(m[0]):]
	if m[2] == ": " {
		return rest
	}
	name := "resource"
	if o.typ != "" {
		name = o.typ
	}
	return "the " + name + " " + rest
}

// entryPath maps an expression about entry k of the request careflow
// built back to the file: Bundle.entry[k].resource.status is
// Observation.status for an NDJSON line or a single resource, and
// Bundle.entry[j].resource.status for entry j of the file's Bundle.
// renameEntryPaths rewrites the expressions of a whole request's failure
// (a limit crossed inside one entry) as entryPath does an entry's.
func renameEntryPaths(issues []fhir.OutcomeIssue, req importRequest) {
	for i := range issues {
		for j, e := range issues[i].Expression {
			rest, ok := strings.CutPrefix(e, "Bundle.entry[")
			end := strings.IndexByte(rest, ']')
			if !ok || end < 1 {
				continue
			}
			if k, err := strconv.Atoi(rest[:end]); err == nil && k < len(req.origins) {
				issues[i].Expression[j] = entryPath(e, k, req.origins[k], req.asSent)
			}
		}
	}
}

func entryPath(expr string, k int, o entryOrigin, asSent bool) string {
	if asSent {
		return expr
	}
	rest, ok := strings.CutPrefix(expr, "Bundle.entry["+strconv.Itoa(k)+"]")
	if !ok {
		return expr
	}
	if o.line == 0 && o.entry >= 0 {
		return "Bundle.entry[" + strconv.Itoa(o.entry) + "]" + rest
	}
	if r, ok := strings.CutPrefix(rest, ".resource"); ok {
		return o.typ + r
	}
	// The request careflow made for the resource: its type and id.
	return o.typ
}

// report lists one failure on stderr: the file, the line or entry, the
// message, then one indented line per validation issue.
func (imp *importer) report(f importFailure) {
	var b strings.Builder
	b.WriteString(f.file)
	if f.where != "" {
		b.WriteString(" " + f.where)
	}
	b.WriteString(": " + strings.TrimSuffix(f.msg, "."))
	for _, is := range f.issues {
		b.WriteString("\n    ")
		if len(is.Expression) > 0 {
			b.WriteString(strings.Join(is.Expression, ", "))
			if is.Diagnostics != "" {
				b.WriteString(": ")
			}
		}
		b.WriteString(is.Diagnostics)
	}
	imp.progress.println(b.String())
}

// summary prints what the import did.
func (imp *importer) summary(w io.Writer, files, skipped int, elapsed time.Duration) {
	t := imp.t
	written := t.writes()
	verdict := "import done"
	if imp.stoppedAt != "" || imp.fatal != nil {
		verdict = "import stopped"
	}
	fmt.Fprintf(w, "%s in %s: %d of %s read, %s written (%s created, %s updated",
		verdict, elapsed.Round(time.Millisecond), t.files, count(files, "file"), count(written, "resource"), thousands(t.created), thousands(t.updated))
	if t.deleted > 0 {
		fmt.Fprintf(w, ", %s deleted", thousands(t.deleted))
	}
	fmt.Fprintf(w, "), %s failed", thousands(t.failed))
	if s := elapsed.Seconds(); s > 0 {
		fmt.Fprintf(w, "; %s resources/s", thousands(int(float64(written+t.unchanged+t.failed)/s)))
	}
	fmt.Fprintln(w)
	if t.unchanged > 0 {
		fmt.Fprintf(w, "%s found %s already stored and wrote nothing\n", count(t.unchanged, "conditional create"), pronoun(t.unchanged))
	}
	if t.retried > 0 {
		fmt.Fprintf(w, "%s waited for resources from other files and tried again\n", count(t.retried, "transaction"))
	}
	if skipped > 0 {
		fmt.Fprintf(w, "skipped %s: not .json or .ndjson\n", count(skipped, "file"))
	}
	if written > 0 {
		fmt.Fprintf(w, "audit: every write is in the audit log as %s, request id %s\n", importActor, imp.guard.Caller().RequestID)
	}
	if t.failed > 0 || t.failedFiles > 0 {
		fmt.Fprintf(w, "failures are listed above (%s failed, %s could not be read); importing again after fixing them is safe: resources with an id are updated in place\n",
			count(t.failed, "resource"), count(t.failedFiles, "file"))
	}
	if imp.stoppedAt != "" {
		fmt.Fprintf(w, "interrupted: imported through %s; %s not read\n", imp.stoppedAt, count(imp.notRead, "more file"))
	}
}

// count writes n and a noun, plural unless n is 1: "1 file", "2 files".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return thousands(n) + " " + noun + "s"
}

func pronoun(n int) string {
	if n == 1 {
		return "its resource"
	}
	return "their resources"
}
