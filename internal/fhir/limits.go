package fhir

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits bound what one resource may cost the server before anything
// expensive looks at it. Validation, FHIRPath invariants, code checks,
// encryption and index extraction all grow with the number of elements, so
// a body that is small in bytes but huge in elements (half a million given
// names in 2.5 MB) must be refused by a cheap pass first. Limits.Check is
// that pass: one scan over the bytes, no allocation per element, stopping
// at the first limit crossed.
//
// A zero field takes its default (DefaultLimits), so a caller that sets
// nothing is protected. The defaults sit far above any real record (the
// largest shared sample uses a few percent of each; limits_test.go checks
// every one passes) and far below what makes one request slow for others.
type Limits struct {
	// Elements bounds the JSON values (objects, arrays, strings, numbers,
	// booleans, nulls) of one resource. A Bundle entry's resource is a
	// resource of its own: it is counted apart from the Bundle and from
	// the other entries.
	Elements int
	// ArrayItems bounds the items of any one array, except a Bundle's
	// entry array, which BundleEntries bounds.
	ArrayItems int
	// Depth bounds the nesting of objects and arrays, counted from the
	// document root (a Bundle's entry resources start three levels down).
	Depth int
	// StringBytes bounds one string value, counted as decoded UTF-8 bytes.
	// R4 caps strings at 1 MB but exempts base64Binary (attachments), which
	// this type-blind pass cannot tell apart, so the default is larger;
	// the validator still applies R4's rule to the strings it covers.
	StringBytes int
	// BundleEntries bounds the entries of one Bundle.
	BundleEntries int
}

// The defaults. Real resources stay far below each: across the shared
// samples (HL7, NPHIES, HCX examples) the most are 3,994 elements in one
// resource, 86 items in an array, 255 Bundle entries, nesting of 19 levels
// and a 93 KB string (TestEverySharedSamplePassesTheDefaults).
const (
	DefaultMaxElements      = 100_000
	DefaultMaxArrayItems    = 10_000
	DefaultMaxDepth         = 64
	DefaultMaxStringBytes   = 8 << 20
	DefaultMaxBundleEntries = 10_000
)

// DefaultLimits returns the limits a zero Limits stands for.
func DefaultLimits() Limits {
	return Limits{
		Elements:      DefaultMaxElements,
		ArrayItems:    DefaultMaxArrayItems,
		Depth:         DefaultMaxDepth,
		StringBytes:   DefaultMaxStringBytes,
		BundleEntries: DefaultMaxBundleEntries,
	}
}

// WithDefaults returns l with every zero (or negative) field set to its
// default.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.Elements <= 0 {
		l.Elements = d.Elements
	}
	if l.ArrayItems <= 0 {
		l.ArrayItems = d.ArrayItems
	}
	if l.Depth <= 0 {
		l.Depth = d.Depth
	}
	if l.StringBytes <= 0 {
		l.StringBytes = d.StringBytes
	}
	if l.BundleEntries <= 0 {
		l.BundleEntries = d.BundleEntries
	}
	return l
}

// The names of the limits, as LimitError.Limit reports them. They match the
// flags that set them (--max-resource-elements, ...) without the prefix.
const (
	LimitElements      = "resource-elements"
	LimitArrayItems    = "array-items"
	LimitDepth         = "depth"
	LimitStringBytes   = "string-bytes"
	LimitBundleEntries = "bundle-entries"
	LimitIndexRows     = "index-rows"
)

// LimitError says which limit a resource crossed and where. Path is the
// element's FHIR path with indexes ("Patient.name[0].given"); the message
// names the limit and its value, never a value the client sent.
type LimitError struct {
	Limit string
	Max   int
	Path  string
}

func (e *LimitError) Error() string {
	var what string
	switch e.Limit {
	case LimitElements:
		what = "the resource has more than %d elements"
	case LimitArrayItems:
		what = "the array has more than %d items"
	case LimitDepth:
		what = "the element is nested deeper than %d levels"
	case LimitStringBytes:
		what = "the string is longer than %d bytes"
	case LimitBundleEntries:
		what = "the Bundle has more than %d entries"
	case LimitIndexRows:
		what = "the resource would need more than %d search-index rows"
	default:
		what = "the resource is over a limit of %d"
	}
	return fmt.Sprintf(what+" (limit %s = %d)", e.Max, e.Limit, e.Max)
}

// Issue returns the error as an OperationOutcome issue of type too-costly,
// the IssueType for "the resources would be too costly to process".
func (e *LimitError) Issue() OutcomeIssue {
	return OutcomeIssue{Severity: SeverityError, Code: IssueTooCostly, Diagnostics: e.Error(), Expression: []string{e.Path}}
}

// Check scans raw, a resource of type root ("Patient", "Bundle"), and
// returns the first limit it crosses, or nil. It does not validate: JSON it
// cannot follow ends the scan without an error, and the parser that runs
// next reports it. Its cost is one pass over the bytes and a stack as deep
// as the document, whatever the document holds.
func (l Limits) Check(raw []byte, root string) *LimitError {
	s := limitScanner{l: l.WithDefaults(), data: raw, root: root, final: true}
	return s.run()
}

// ReadAll reads a resource of type root from r to its end, checking it as
// it arrives: at the first limit crossed it stops reading and returns the
// *LimitError, so a body over a limit is never read (or held) whole. Other
// errors are r's. The bytes it returns pass Check.
func (l Limits) ReadAll(r io.Reader, root string) ([]byte, error) {
	s := limitScanner{l: l.WithDefaults(), root: root}
	buf := make([]byte, 0, 32<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		s.data, s.final = buf, err != nil
		if e := s.run(); e != nil {
			return nil, e
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// frame is one open object or array on the scanner's stack.
type frame struct {
	array bool
	// items counts an array's items so far.
	items int
	// key is the member of the enclosing object this container is the
	// value of (none for array items and the root).
	key span
	// limit is the item limit of an array, and its name.
	limit     int
	limitName string
	// scope marks a resource root: the document and each Bundle entry's
	// resource. Elements are counted per scope; outer is the enclosing
	// scope's count, restored when this scope closes.
	scope bool
	outer int
}

type limitScanner struct {
	l     Limits
	data  []byte
	pos   int
	root  string
	stack []frame
	// elements counts the values of the innermost open scope.
	elements int
	// key is the member name just read in the innermost object, the name
	// the next value takes.
	key span
	// final says data holds the whole document. Otherwise (ReadAll) more
	// may come, and a token the data ends inside waits for it.
	final bool
	// cut is how far the token at pos was scanned when the data ended
	// inside it, so that more data resumes the scan instead of scanning a
	// long string again from its start.
	cut struct {
		valid    bool
		at, i, n int
	}
	// lost is set when the scan meets JSON it cannot follow; it then says
	// nothing more, leaving the error to the parser.
	lost bool
}

// run scans from pos to the end of data, or to the first limit crossed.
func (s *limitScanner) run() *LimitError {
	if s.pos == 0 {
		if !s.final && len(s.data) < len(utf8BOM) && strings.HasPrefix(utf8BOM, string(s.data)) {
			return nil
		}
		if strings.HasPrefix(string(s.data[:min(len(s.data), len(utf8BOM))]), utf8BOM) {
			s.pos = len(utf8BOM)
		}
	}
	for !s.lost {
		s.skipSpace()
		if s.pos >= len(s.data) {
			return nil
		}
		c := s.data[s.pos]
		top := len(s.stack) - 1
		switch {
		case c == ',' || c == ':':
			s.pos++
			continue
		case c == '}' || c == ']':
			if top < 0 {
				s.lost = true
				return nil
			}
			f := s.stack[top]
			if f.scope {
				s.elements = f.outer
			}
			s.stack = s.stack[:top]
			s.pos++
			continue
		case c == '"' && top >= 0 && !s.stack[top].array && !s.key.set():
			// A member name.
			end, _, ok := s.token()
			if !ok {
				return nil
			}
			s.key = span{s.pos + 1, end - 1}
			s.pos = end
			continue
		}
		// A value: it is one element, and an item of its array. A string
		// or literal is scanned whole before it is counted, so that one
		// cut by the end of the data is counted once, when it is complete.
		end, n := s.pos+1, 0
		if c != '{' && c != '[' {
			var ok bool
			if end, n, ok = s.token(); !ok {
				return nil
			}
		}
		key := s.key
		s.key = span{}
		if top >= 0 && s.stack[top].array {
			f := &s.stack[top]
			if f.items >= f.limit {
				return s.fail(f.limitName, f.limit, false, span{})
			}
			f.items++
		}
		s.elements++
		if s.elements > s.l.Elements {
			return s.fail(LimitElements, s.l.Elements, true, key)
		}
		switch c {
		case '{', '[':
			if len(s.stack) >= s.l.Depth {
				return s.fail(LimitDepth, s.l.Depth, true, key)
			}
			f := frame{array: c == '[', key: key, limit: s.l.ArrayItems, limitName: LimitArrayItems}
			if f.array && s.named(key, "entry") && s.inScopeRoot() {
				f.limit, f.limitName = s.l.BundleEntries, LimitBundleEntries
			}
			if !f.array && (top < 0 || s.named(key, "resource") && s.inBundleEntry()) {
				// A resource root: its elements are its own. The value
				// itself was counted in the enclosing scope.
				f.scope, f.outer = true, s.elements
				s.elements = 1
			}
			s.stack = append(s.stack, f)
		case '"':
			if n > s.l.StringBytes {
				return s.fail(LimitStringBytes, s.l.StringBytes, true, key)
			}
		}
		s.pos = end
	}
	return nil
}

// span locates a member name in data, between its quotes. It holds
// offsets, not a slice, because ReadAll's buffer moves as it grows; the
// zero span is no name.
type span struct{ start, end int }

func (k span) set() bool { return k.end > 0 }

// named reports whether the member name at k is name.
func (s *limitScanner) named(k span, name string) bool {
	return k.set() && string(s.data[k.start:k.end]) == name
}

// inScopeRoot reports whether the innermost open container is a resource
// root object.
func (s *limitScanner) inScopeRoot() bool {
	top := len(s.stack) - 1
	return top >= 0 && !s.stack[top].array && s.stack[top].scope
}

// inBundleEntry reports whether the innermost open container is an item of
// a resource's entry array (a Bundle entry).
func (s *limitScanner) inBundleEntry() bool {
	n := len(s.stack)
	return n >= 3 && !s.stack[n-1].array && s.stack[n-2].array && s.stack[n-2].limitName == LimitBundleEntries
}

func (s *limitScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// keyName is a member name as a path shows it. Names are element names;
// one that is not plain ASCII letters, digits and underscores is not shown.
func keyName(k []byte) string {
	if len(k) == 0 || len(k) > 64 {
		return "?"
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return "?"
		}
	}
	return string(k)
}

// token scans the string or literal (number, true, false, null) at pos
// and returns its end and, for a string, its decoded length in bytes
// (escapes counted as what they decode to). ok is false when the data ends
// inside it: the scan stops there, to resume when more data comes, or for
// good when the data is final.
func (s *limitScanner) token() (end, n int, ok bool) {
	d := s.data
	i := s.pos
	if s.cut.valid && s.cut.at == s.pos {
		i, n = s.cut.i, s.cut.n
	}
	s.cut.valid = false
	if d[s.pos] != '"' {
		for i < len(d) && !isDelimiter(d[i]) {
			i++
		}
		if i < len(d) || s.final {
			return i, 0, true
		}
		return s.cutAt(i, 0)
	}
	if i == s.pos {
		i++ // the opening quote
	}
	for i < len(d) {
		// Runs of plain bytes are skipped at once, up to the next quote or
		// backslash.
		stop := len(d)
		if q := bytes.IndexByte(d[i:], '"'); q >= 0 {
			stop = i + q
		}
		if b := bytes.IndexByte(d[i:stop], '\\'); b >= 0 {
			stop = i + b
		}
		n += stop - i
		i = stop
		if i == len(d) {
			break
		}
		switch d[i] {
		case '"':
			return i + 1, n, true
		case '\\':
			if i+1 >= len(d) {
				return s.cutAt(i, n)
			}
			if d[i+1] == 'u' {
				// Telling a surrogate pair needs both escapes.
				if !s.final && len(d)-i < 12 {
					return s.cutAt(i, n)
				}
				w, step := escapedLen(d[i:])
				n += w
				i += step
				continue
			}
			n++
			i += 2
		}
	}
	return s.cutAt(i, n)
}

// cutAt records how far the token at pos was scanned before the data ran
// out. With final data the document is cut short: the scan is lost.
func (s *limitScanner) cutAt(i, n int) (int, int, bool) {
	if s.final {
		s.lost = true
	} else {
		s.cut.valid, s.cut.at, s.cut.i, s.cut.n = true, s.pos, i, n
	}
	return 0, 0, false
}

func isDelimiter(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\n', '\r', ':', '"', '{', '[':
		return true
	}
	return false
}

// escapedLen reads the \uXXXX escape at the start of d and returns the
// UTF-8 bytes it decodes to and the bytes it takes, as the parser decodes
// it: a surrogate pair is one 4-byte rune, a lone surrogate U+FFFD.
func escapedLen(d []byte) (width, step int) {
	r, ok := hexRune(d)
	if !ok {
		return 1, 6
	}
	if !utf16.IsSurrogate(r) {
		return utf8.RuneLen(r), 6
	}
	if r2, ok := hexRune(d[min(6, len(d)):]); ok && utf16.DecodeRune(r, r2) != utf8.RuneError {
		return 4, 12
	}
	return utf8.RuneLen(utf8.RuneError), 6
}

// hexRune reads a \uXXXX escape at the start of d.
func hexRune(d []byte) (rune, bool) {
	if len(d) < 6 || d[0] != '\\' || d[1] != 'u' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(d[2:6]), 16, 32)
	return rune(v), err == nil
}

// fail builds the error for the value being read: item says it is an item
// of the innermost array, key the member it is the value of. With neither,
// the path is the innermost container's (an array over its item limit).
func (s *limitScanner) fail(limit string, maxValue int, item bool, key span) *LimitError {
	return &LimitError{Limit: limit, Max: maxValue, Path: s.path(item, key)}
}

// path renders the open containers, and the value being read, as a FHIR
// path: members as .name, array items as [i].
func (s *limitScanner) path(item bool, key span) string {
	var b strings.Builder
	b.WriteString(s.root)
	for i, f := range s.stack {
		if i > 0 && s.stack[i-1].array {
			b.WriteString("[" + strconv.Itoa(s.stack[i-1].items-1) + "]")
		} else if f.key.set() {
			b.WriteString("." + keyName(s.data[f.key.start:f.key.end]))
		}
	}
	if n := len(s.stack); item && n > 0 && s.stack[n-1].array {
		b.WriteString("[" + strconv.Itoa(s.stack[n-1].items-1) + "]")
	} else if key.set() {
		b.WriteString("." + keyName(s.data[key.start:key.end]))
	}
	return b.String()
}
