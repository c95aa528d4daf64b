package rcm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"

	"github.com/careflow/careflow/internal/errs"
)

// MaxBatchEntries is the most entries one batch may carry. A batch is
// started entry by entry within one request (see Batches.Submit), so this
// bounds how long that request runs; a bigger run is several batches.
const MaxBatchEntries = 10_000

// fieldName is what an unknown key must look like to be named back.
var fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// maxBatchLine bounds one NDJSON line (one JourneyRequest).
const maxBatchLine = 1 << 20

// BatchEntry is one entry of a batch as decoded: the request, or why it
// could not be read (Err, an *errs.Error naming the field; never the
// value). An entry that cannot be read is refused on its own; the others
// still start.
type BatchEntry struct {
	Request JourneyRequest
	Err     error
}

// DecodedBatch is a batch body read whole: its entries in order and the
// SHA-256 of the bytes received (a retried POST must carry the same).
type DecodedBatch struct {
	Entries    []BatchEntry
	SourceHash string
}

// DecodeBatch reads a batch body: a JSON array of JourneyRequest, or with
// ndjson one JourneyRequest per line (blank lines skipped). Each entry is
// decoded strictly (an unknown field refuses the entry). A body that is
// not an array, an array that is not JSON, and more than MaxBatchEntries
// entries refuse the whole batch; an NDJSON line that is not JSON refuses
// that entry only.
func DecodeBatch(r io.Reader, ndjson bool) (DecodedBatch, error) {
	h := sha256.New()
	r = io.TeeReader(r, h)
	var out DecodedBatch
	add := func(raw []byte) error {
		if len(out.Entries) == MaxBatchEntries {
			return errs.E(errs.Invalid, "a batch holds at most %d entries; split the file", MaxBatchEntries)
		}
		var e BatchEntry
		e.Request, e.Err = decodeEntry(raw)
		out.Entries = append(out.Entries, e)
		return nil
	}
	if ndjson {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), maxBatchLine)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			if err := add(line); err != nil {
				return out, err
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return out, errs.E(errs.Invalid, "a line of the batch is longer than %d bytes", maxBatchLine)
			}
			return out, errs.Wrap(errs.Invalid, err, "cannot read the batch")
		}
	} else {
		dec := json.NewDecoder(r)
		tok, err := dec.Token()
		if d, ok := tok.(json.Delim); err != nil || !ok || d != '[' {
			return out, errs.E(errs.Invalid, "must be a JSON array of journey requests (or NDJSON with Content-Type application/x-ndjson)")
		}
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return out, errs.E(errs.Invalid, "entry %d is not valid JSON; nothing was started", len(out.Entries))
			}
			if err := add(raw); err != nil {
				return out, err
			}
		}
		if _, err := dec.Token(); err != nil {
			return out, errs.E(errs.Invalid, "the array is not closed; nothing was started")
		}
		if _, err := dec.Token(); err != io.EOF {
			return out, errs.E(errs.Invalid, "the body holds more than one JSON array")
		}
	}
	if len(out.Entries) == 0 {
		return out, errs.E(errs.Invalid, "the batch has no entries")
	}
	out.SourceHash = hex.EncodeToString(h.Sum(nil))
	return out, nil
}

// decodeEntry decodes one entry strictly; its error names the field.
func decodeEntry(raw []byte) (JourneyRequest, error) {
	var req JourneyRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil && dec.More() {
		err = errors.New("trailing data")
	}
	if err == nil {
		if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
			return req, nil
		}
		return req, errs.E(errs.Invalid, "an entry must be a JSON object (a journey request)")
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field == "":
		return req, errs.E(errs.Invalid, "an entry must be a JSON object (a journey request)")
	case errors.As(err, &te):
		return req, errs.E(errs.Invalid, "has the wrong JSON type (want %s)", te.Type.Kind()).InField(te.Field)
	case errors.As(err, &se):
		return req, errs.E(errs.Invalid, "the entry is not valid JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// The field's name is the client's own key, not a value.
		// Named only when it looks like a field name (a client could put
		// anything in a key).
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		if !fieldName.MatchString(name) {
			return req, errs.E(errs.Invalid, "has a key that is not a field of a journey request")
		}
		return req, errs.E(errs.Invalid, "is not a field of a journey request").InField(name)
	}
	return req, errs.E(errs.Invalid, "the entry is not a journey request")
}
