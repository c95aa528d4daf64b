package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/careflow/careflow/internal/fhir"
)

// This file turns the files named on the command line into requests for
// record.Service.ProcessBundle, each entry remembering where in its file it
// came from so that a failure can be reported by line or entry number.

// importFile is one file an import reads.
type importFile struct {
	path   string
	ndjson bool // FHIR Bulk Data NDJSON: one resource per line
	gzip   bool
	size   int64 // bytes on disk; 0 when not a regular file
}

// importFormat reads a file's format from its name: .json or .ndjson,
// either optionally gzip-compressed (.json.gz, .ndjson.gz).
func importFormat(name string) (ndjson, gz, ok bool) {
	n := strings.ToLower(name)
	if strings.HasSuffix(n, ".gz") {
		gz, n = true, strings.TrimSuffix(n, ".gz")
	}
	switch {
	case strings.HasSuffix(n, ".ndjson"):
		return true, gz, true
	case strings.HasSuffix(n, ".json"):
		return false, gz, true
	}
	return false, false, false
}

// collectImportFiles expands the command line's paths in the order given: a
// file is taken as it is, a folder is walked in lexical order for .json and
// .ndjson files (optionally .gz). Other files found in folders, and hidden
// files and folders (.git, macOS ._ files), are returned as skipped. A path
// that does not exist, or a named file of another kind, is a usage error.
// A file reached twice is read once.
func collectImportFiles(paths []string) (files []importFile, skipped []string, err error) {
	seen := map[string]bool{}
	add := func(path string, info fs.FileInfo) {
		clean := filepath.Clean(path)
		if seen[clean] {
			return
		}
		seen[clean] = true
		ndjson, gz, _ := importFormat(path)
		f := importFile{path: path, ndjson: ndjson, gzip: gz}
		if info.Mode().IsRegular() {
			f.size = info.Size()
		}
		files = append(files, f)
	}
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil, usageError{fmt.Sprintf("%s does not exist", p)}
			}
			return nil, nil, usageError{fmt.Sprintf("cannot read %s: %v", p, pathErr(err))}
		}
		if !info.IsDir() {
			if _, _, ok := importFormat(p); !ok {
				return nil, nil, usageError{fmt.Sprintf("%s is not a .json or .ndjson file (optionally .gz)", p)}
			}
			add(p, info)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			hidden := path != p && strings.HasPrefix(d.Name(), ".")
			if d.IsDir() {
				if hidden {
					skipped = append(skipped, path+string(filepath.Separator))
					return filepath.SkipDir
				}
				return nil
			}
			if _, _, ok := importFormat(d.Name()); !ok || hidden {
				skipped = append(skipped, path)
				return nil
			}
			info, err := os.Stat(path) // follows a symbolic link
			if err != nil {
				return err
			}
			if info.IsDir() {
				skipped = append(skipped, path)
				return nil
			}
			add(path, info)
			return nil
		})
		if err != nil {
			return nil, nil, usageError{fmt.Sprintf("cannot read the folder %s: %v", p, pathErr(err))}
		}
	}
	return files, skipped, nil
}

// pathErr drops the path a *fs.PathError repeats, for messages that name it
// already.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// entryOrigin is where one entry of a request came from in its file.
type entryOrigin struct {
	line  int // NDJSON: the 1-based line; 0 for a Bundle or a single resource
	entry int // a Bundle's entry index; -1 for NDJSON and a single resource
	typ   string
}

// where names the origin for a person: "line 17", "entry 4", or "" for the
// file as a whole.
func (o entryOrigin) where() string {
	switch {
	case o.line > 0:
		return "line " + strconv.Itoa(o.line)
	case o.entry >= 0:
		return "entry " + strconv.Itoa(o.entry)
	}
	return ""
}

// at is the line or entry number, for ordering.
func (o entryOrigin) at() int {
	if o.line > 0 {
		return o.line
	}
	return o.entry
}

// importRequest is one ProcessBundle call and, entry by entry, where its
// entries came from.
type importRequest struct {
	body []byte
	// transaction: the file's own transaction Bundle, all or nothing.
	transaction bool
	// asSent: the file's own batch or transaction Bundle, so entry numbers
	// and expressions in the record's answers are already the file's.
	asSent  bool
	origins []entryOrigin
	// rejected are entries of this part of the file that failed before they
	// could be sent (a line that is not a resource).
	rejected []importFailure
	// through says how far into the file the request reaches ("line 1500"),
	// for the report of an interrupted import.
	through string
}

// importFailure is one thing that could not be imported: where (the file
// and the line or entry), what went wrong, and the validation issues.
// Messages name elements, never values: they come from the validator and
// the record, whose diagnostics never repeat what a file holds.
type importFailure struct {
	file   string
	at     int // the line or entry, to list a batch's failures in file order
	where  string
	msg    string
	issues []fhir.OutcomeIssue
}

// maxImportLine bounds one NDJSON line, so a file that is not NDJSON (one
// enormous line) fails with a message instead of exhausting memory.
const maxImportLine = 64 << 20

var utf8BOM = []byte("\ufeff")

// openImportFile opens f for reading through a reader that reports the
// bytes read from disk (compressed bytes for .gz) to onRead.
func openImportFile(f importFile, onRead func(int64)) (io.Reader, func() error, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open it: %w", pathErr(err))
	}
	var r io.Reader = &countingReader{r: fh, onRead: onRead}
	if f.gzip {
		zr, err := gzip.NewReader(bufio.NewReaderSize(r, 64<<10))
		if err != nil {
			fh.Close()
			return nil, nil, fmt.Errorf("it is not gzip-compressed: %w", err)
		}
		r = zr
	}
	return r, fh.Close, nil
}

// readImportFile reads f and calls send with each request it makes, in
// file order. send returns false to stop (an interrupted import); the
// error is for the file as a whole (it cannot be read, or is not FHIR).
func readImportFile(f importFile, batchSize int, onRead func(int64), send func(importRequest) bool) error {
	r, closeFile, err := openImportFile(f, onRead)
	if err != nil {
		return err
	}
	defer closeFile()
	if f.ndjson {
		return readNDJSON(r, batchSize, send)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("cannot read it: %w", pathErr(err))
	}
	return readJSONFile(raw, batchSize, send)
}

// readJSONFile turns one JSON document into requests: a transaction or
// batch Bundle goes as it is, a Bundle of another type as batches of its
// entries' resources, any other resource as one write.
func readJSONFile(raw []byte, batchSize int, send func(importRequest) bool) error {
	raw = bytes.TrimSpace(bytes.TrimPrefix(raw, utf8BOM))
	env, err := fhir.ReadEnvelope(raw)
	if err != nil {
		return fmt.Errorf("it is not a FHIR resource: %w", err)
	}
	if env.ResourceType != "Bundle" {
		var b batchBuilder
		origin := entryOrigin{entry: -1, typ: env.ResourceType}
		if f := b.add(raw, env, origin); f != nil {
			return fileFailure{*f}
		}
		send(b.request(""))
		return nil
	}
	bundle, err := fhir.ParseBundle(raw)
	if err != nil {
		issues := errorIssues(fhir.ValidateType(raw, "Bundle"))
		return fileFailure{importFailure{msg: "the Bundle cannot be read", issues: issues}}
	}
	switch bundle.Type {
	case fhir.BundleTransaction, fhir.BundleBatch:
		origins := make([]entryOrigin, len(bundle.Entry))
		for i, e := range bundle.Entry {
			origins[i] = entryOrigin{entry: i, typ: requestType(e)}
		}
		req := importRequest{body: raw, transaction: bundle.Type == fhir.BundleTransaction, asSent: true, origins: origins}
		if len(origins) > 0 {
			req.through = fmt.Sprintf("entry %d", len(origins)-1)
		}
		send(req)
		return nil
	}
	return sendBundleEntries(bundle, batchSize, send)
}

// requestType is the resource type an entry of a batch or transaction
// acts on, for messages.
func requestType(e fhir.BundleEntry) string {
	if len(e.Resource) > 0 {
		if env, err := fhir.ReadEnvelope(e.Resource); err == nil {
			return env.ResourceType
		}
	}
	if e.Request != nil {
		t, _, _ := strings.Cut(strings.TrimPrefix(e.Request.URL, "/"), "/")
		t, _, _ = strings.Cut(t, "?")
		if fhir.IsResourceType(t) {
			return t
		}
	}
	return ""
}

// sendBundleEntries loads a Bundle that is not a request (collection,
// document, message, searchset, history) as batches of its entries'
// resources. An entry whose fullUrl is urn:uuid:X and whose resource has
// no id is stored as Type/X, and every reference to urn:uuid:X in the
// Bundle is rewritten to it: the links between entries hold, and loading
// the Bundle again updates the same records instead of adding copies.
func sendBundleEntries(bundle *fhir.Bundle, batchSize int, send func(importRequest) bool) error {
	type item struct {
		raw    []byte
		env    fhir.Envelope
		origin entryOrigin
		fail   *importFailure
	}
	items := make([]item, 0, len(bundle.Entry))
	urns := map[string]string{} // urn:uuid:X -> Type/id
	for i, e := range bundle.Entry {
		if e.Search != nil && e.Search.Mode == "outcome" {
			continue // a searchset's note about the search, not data
		}
		it := item{raw: e.Resource, origin: entryOrigin{entry: i}}
		if len(e.Resource) == 0 {
			it.fail = &importFailure{at: i, where: it.origin.where(), msg: "the entry has no resource to import"}
			items = append(items, it)
			continue
		}
		env, err := fhir.ReadEnvelope(e.Resource)
		if err != nil {
			it.fail = &importFailure{at: i, where: it.origin.where(), msg: "the entry's resource is not a FHIR resource"}
			items = append(items, it)
			continue
		}
		it.env, it.origin.typ = env, env.ResourceType
		if uuid, ok := strings.CutPrefix(e.FullURL, "urn:uuid:"); ok && validFHIRID(uuid) {
			if it.env.ID == "" {
				it.env.ID = uuid
				it.raw = withID(it.raw, uuid)
			}
			urns[e.FullURL] = env.ResourceType + "/" + it.env.ID
		}
		items = append(items, it)
	}
	var b batchBuilder
	for i, it := range items {
		if it.fail != nil {
			b.rejected = append(b.rejected, *it.fail)
		} else {
			raw := rewriteURNReferences(it.raw, urns)
			if f := b.add(raw, it.env, it.origin); f != nil {
				b.rejected = append(b.rejected, *f)
			}
		}
		if b.size() >= batchSize || i == len(items)-1 {
			if !send(b.request(it.origin.where())) {
				return nil
			}
			b = batchBuilder{}
		}
	}
	return nil
}

// withID adds "id" to a resource that has none, as its first member.
func withID(raw []byte, id string) []byte {
	i := bytes.IndexByte(raw, '{')
	if i < 0 {
		return raw
	}
	rest := bytes.TrimSpace(raw[i+1:])
	out := make([]byte, 0, len(raw)+len(id)+10)
	out = append(out, raw[:i+1]...)
	out = append(out, `"id":"`+id+`"`...)
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}

// urnReference finds "reference": "urn:uuid:..." members. Only a member
// named reference matches, so an identifier whose value is a urn:uuid (as
// Synthea writes) is left alone; a quote inside a JSON string is escaped,
// so text that merely mentions such a member does not match either.
var urnReference = regexp.MustCompile(`("reference"\s*:\s*")(urn:uuid:[0-9A-Za-z.-]{1,64})"`)

// rewriteURNReferences replaces references to the Bundle's urn:uuid
// fullUrls with the Type/id their entries are stored as.
func rewriteURNReferences(raw []byte, urns map[string]string) []byte {
	if len(urns) == 0 || !bytes.Contains(raw, []byte("urn:uuid:")) {
		return raw
	}
	return urnReference.ReplaceAllFunc(raw, func(m []byte) []byte {
		sub := urnReference.FindSubmatch(m)
		to, ok := urns[string(sub[2])]
		if !ok {
			return m
		}
		return append(append(append([]byte(nil), sub[1]...), to...), '"')
	})
}

// readNDJSON reads FHIR Bulk Data NDJSON, one resource per line, and sends
// every batchSize resources as one batch. Blank lines are allowed; a line
// that is not a resource fails alone.
func readNDJSON(r io.Reader, batchSize int, send func(importRequest) bool) error {
	br := bufio.NewReaderSize(r, 256<<10)
	var b batchBuilder
	line := 0
	for {
		text, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			if errors.Is(err, errLineTooLong) {
				return fmt.Errorf("line %d is longer than %d MiB, so this is not NDJSON", line+1, maxImportLine>>20)
			}
			return fmt.Errorf("cannot read it after line %d: %w", line, pathErr(err))
		}
		eof := errors.Is(err, io.EOF)
		if !eof || len(text) > 0 {
			line++
			if line == 1 {
				text = bytes.TrimPrefix(text, utf8BOM)
			}
			text = bytes.TrimSpace(text)
			if len(text) > 0 {
				origin := entryOrigin{line: line, entry: -1}
				env, err := fhir.ReadEnvelope(text)
				if err != nil {
					b.rejected = append(b.rejected, importFailure{at: line, where: origin.where(), msg: "not a FHIR resource: " + err.Error()})
				} else {
					origin.typ = env.ResourceType
					if f := b.add(text, env, origin); f != nil {
						b.rejected = append(b.rejected, *f)
					}
				}
			}
		}
		if (b.size() >= batchSize || eof) && (b.size() > 0 || len(b.rejected) > 0) {
			if !send(b.request("line " + strconv.Itoa(line))) {
				return nil
			}
			b = batchBuilder{}
		}
		if eof {
			return nil
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline; at the end of the
// input it returns what is left with io.EOF.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > maxImportLine {
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}

// batchBuilder writes a batch Bundle of resources, PUT Type/id for those
// with an id (keeping the ids, so references between the files of a bulk
// export resolve, and a second import updates rather than duplicates) and
// POST Type for those without.
type batchBuilder struct {
	buf      bytes.Buffer
	origins  []entryOrigin
	rejected []importFailure
}

// size is the number of lines or entries the batch accounts for.
func (b *batchBuilder) size() int { return len(b.origins) + len(b.rejected) }

// add appends a resource, or returns why it cannot be sent. raw must be
// one JSON object (fhir.ReadEnvelope read it).
func (b *batchBuilder) add(raw []byte, env fhir.Envelope, o entryOrigin) *importFailure {
	if !fhir.IsResourceType(env.ResourceType) {
		return &importFailure{at: o.at(), where: o.where(), msg: "resourceType is not a FHIR R4 resource type careflow knows",
			issues: []fhir.OutcomeIssue{{Severity: fhir.SeverityError, Code: "value", Diagnostics: "unknown resource type", Expression: []string{"resourceType"}}}}
	}
	if env.ID != "" && !validFHIRID(env.ID) {
		return &importFailure{at: o.at(), where: o.where(), msg: "the id is not a valid FHIR id (1 to 64 letters, digits, '-' or '.')",
			issues: []fhir.OutcomeIssue{{Severity: fhir.SeverityError, Code: "value", Diagnostics: "invalid id", Expression: []string{env.ResourceType + ".id"}}}}
	}
	if len(b.origins) == 0 {
		b.buf.WriteString(`{"resourceType":"Bundle","type":"batch","entry":[`)
	} else {
		b.buf.WriteByte(',')
	}
	// Type names and ids were checked above: they need no escaping.
	b.buf.WriteString(`{"resource":`)
	b.buf.Write(raw)
	if env.ID != "" {
		b.buf.WriteString(`,"request":{"method":"PUT","url":"` + env.ResourceType + "/" + env.ID + `"}}`)
	} else {
		b.buf.WriteString(`,"request":{"method":"POST","url":"` + env.ResourceType + `"}}`)
	}
	b.origins = append(b.origins, o)
	return nil
}

// request finishes the Bundle. A batch of rejected lines only has no body.
func (b *batchBuilder) request(through string) importRequest {
	req := importRequest{origins: b.origins, rejected: b.rejected, through: through}
	if len(b.origins) > 0 {
		req.body = append(b.buf.Bytes(), "]}"...)
	}
	return req
}

// validFHIRID is the R4 id rule: 1 to 64 of A-Z a-z 0-9 - and '.'.
func validFHIRID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// fileFailure is a file that failed as a whole, with its issues.
type fileFailure struct{ f importFailure }

func (e fileFailure) Error() string { return e.f.msg }

// errorIssues keeps the issues of severity error and fatal.
func errorIssues(is []fhir.OutcomeIssue) []fhir.OutcomeIssue {
	var out []fhir.OutcomeIssue
	for _, i := range is {
		if i.Severity == fhir.SeverityError || i.Severity == fhir.SeverityFatal {
			out = append(out, i)
		}
	}
	return out
}
