package record

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
)

// Limits bound what one resource may cost the record, so that one writer
// cannot take the server from everyone else. The structural limits
// (fhir.Limits: elements, array items, depth, string bytes, Bundle
// entries) are checked on the bytes before validation, code checks,
// encryption or index extraction look at them; IndexRows is checked while
// the rows are built, so extraction stops at the cap instead of building
// millions of rows. A zero field takes its default.
type Limits struct {
	fhir.Limits
	// IndexRows bounds the search-index rows of one resource version. A
	// name part yields up to 20 prefix rows, so a string with many parts
	// can cost far more rows than elements.
	IndexRows int
}

// DefaultMaxIndexRows is far above a real record: the most any shared
// sample needs is a few hundred rows (TestSampleIndexRowsStayFarBelowTheLimit).
const DefaultMaxIndexRows = 10_000

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	l.Limits = l.Limits.WithDefaults()
	if l.IndexRows <= 0 {
		l.IndexRows = DefaultMaxIndexRows
	}
	return l
}

// Limits returns the limits the record applies, every field set.
func (s *Service) Limits() Limits { return s.limits }

// describe states the limits for the CapabilityStatement.
func (l Limits) describe() string {
	l = l.WithDefaults()
	return fmt.Sprintf("A write over a limit on one resource is refused with 413 and an OperationOutcome issue too-costly naming the limit and the element: "+
		"at most %d elements per resource (each Bundle entry's resource counted apart), %d items per array, %d Bundle entries, nesting %d deep, "+
		"strings of %d bytes, and %d search-index rows per resource; a batch or transaction Bundle over a limit is refused whole.",
		l.Elements, l.ArrayItems, l.BundleEntries, l.Depth, l.StringBytes, l.IndexRows)
}

// CheckLimits is the cheap first look at a body to be written: a resource
// of typ, or a Bundle. Every write runs it before anything that grows with
// the body's contents; callers that split their own work (the import) may
// run it first too.
func (s *Service) CheckLimits(body []byte, typ string) error {
	if e := s.limits.Check(body, typ); e != nil {
		return limitError(e)
	}
	return nil
}

// ReadBody reads a body to be written as typ ("Bundle" for a batch or
// transaction) and checks it against the limits as it arrives: a body over
// a limit is refused as soon as the limit is crossed, without reading the
// rest, so that its sender costs the server no more than that. The write
// itself checks again, for writers that hand over bytes.
func (s *Service) ReadBody(r io.Reader, typ string) ([]byte, error) {
	if !fhir.IsResourceType(typ) {
		typ = "Resource" // paths name elements, never what a client typed
	}
	body, err := s.limits.ReadAll(r, typ)
	var le *fhir.LimitError
	if errors.As(err, &le) {
		return nil, limitError(le)
	}
	return body, err
}

// limitError answers a crossed limit with 413 and one too-costly issue
// naming the limit and the element. 413 rather than 422: the resource may
// be perfectly valid; it is more than this server will process, and only
// a smaller request (or an operator raising the limit) gets it in, which
// is what 413 tells a client, the same answer as a body over the byte
// limit.
func limitError(e *fhir.LimitError) error {
	return errs.Wrap(errs.TooLarge, &IssuesError{Issues: fhir.Issues{e.Issue()}}, "%s", e.Error()).InField(e.Path)
}

// paramElement is a search parameter's path as a FHIR element path:
// "telecom[system=phone]" is the element telecom.
func paramElement(path string) string {
	var b strings.Builder
	depth := 0
	for _, c := range path {
		switch {
		case c == '[':
			depth++
		case c == ']':
			depth--
		case depth == 0:
			b.WriteRune(c)
		}
	}
	return b.String()
}
