package terminology

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ICD-10-CM codes have three to seven characters: a letter, a digit, a
// letter or digit, then up to four letters or digits. The dot after the
// third character is display only; careflow stores codes without it.
const (
	icdMinLen = 3
	icdMaxLen = 7
)

// NormalizeICD10CM turns a dotted (E11.9) or undotted (E119) ICD-10-CM code
// into the undotted storage form. It rejects anything that is not shaped like
// an ICD-10-CM code, including lower case: FHIR codes are case-sensitive and
// ICD-10-CM has no lower-case codes, so accepting "e11.9" would let a typo
// through in one place and fail it in another.
func NormalizeICD10CM(code string) (string, error) {
	s := code
	if i := strings.IndexByte(s, '.'); i >= 0 {
		if i != 3 {
			return "", errors.New("the dot in an ICD-10-CM code comes after the third character")
		}
		if len(s) == 4 {
			return "", errors.New("an ICD-10-CM code does not end with a dot")
		}
		s = s[:3] + s[4:]
	}
	if err := checkICD10CMShape(s); err != nil {
		return "", err
	}
	return s, nil
}

// checkICD10CMShape checks an undotted code.
func checkICD10CMShape(s string) error {
	if len(s) < icdMinLen || len(s) > icdMaxLen {
		return fmt.Errorf("an ICD-10-CM code has %d to %d characters", icdMinLen, icdMaxLen)
	}
	if !isUpper(s[0]) {
		return errors.New("an ICD-10-CM code starts with an upper-case letter")
	}
	if !isDigit(s[1]) {
		return errors.New("the second character of an ICD-10-CM code is a digit")
	}
	for i := 2; i < len(s); i++ {
		if !isUpper(s[i]) && !isDigit(s[i]) {
			return errors.New("an ICD-10-CM code has only upper-case letters and digits")
		}
	}
	return nil
}

// DottedICD10CM returns the display form of an undotted ICD-10-CM code: a dot
// after the third character when there are more than three.
func DottedICD10CM(code string) string {
	if len(code) <= 3 || strings.IndexByte(code, '.') >= 0 {
		return code
	}
	return code[:3] + "." + code[3:]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// Window is the range of dates of service on which a release is valid. Both
// ends are calendar dates and both are inclusive. A zero From or To leaves
// that side open.
type Window struct {
	From time.Time
	To   time.Time
}

// FiscalYearWindow is the validity of a US federal fiscal-year ICD-10-CM
// release: CMS's FY release named for year Y takes effect on October 1 of
// Y-1 and is replaced on October 1 of Y, so "2026" covers dates of service
// 2025-10-01 through 2026-09-30. Mid-year updates (April releases) have other
// windows; pass those explicitly.
func FiscalYearWindow(year int) Window {
	return Window{
		From: time.Date(year-1, time.October, 1, 0, 0, 0, 0, time.UTC),
		To:   time.Date(year, time.September, 30, 0, 0, 0, 0, time.UTC),
	}
}

// DefaultICD10CMWindow returns FiscalYearWindow for a version that is a plain
// four-digit year ("2026"), and an error otherwise: a version such as
// "2024-april" has no window careflow could guess, and guessing wrong would
// make codes valid on dates they were not.
func DefaultICD10CMWindow(version string) (Window, error) {
	if len(version) != 4 {
		return Window{}, fmt.Errorf("version %q is not a fiscal year; give the validity window explicitly", version)
	}
	y, err := strconv.Atoi(version)
	if err != nil || y < 2000 || y > 2999 {
		return Window{}, fmt.Errorf("version %q is not a fiscal year; give the validity window explicitly", version)
	}
	return FiscalYearWindow(y), nil
}

// civilDate drops the clock and the zone from t, keeping the calendar date
// as seen in t's own location: a date of service of 2026-03-01 in Cairo is
// 2026-03-01 whatever the server's zone.
func civilDate(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// normalize returns w with both ends as civil dates.
func (w Window) normalize() Window {
	return Window{From: civilDate(w.From), To: civilDate(w.To)}
}

// Validate reports a window that ends before it starts.
func (w Window) Validate() error {
	n := w.normalize()
	if !n.From.IsZero() && !n.To.IsZero() && n.To.Before(n.From) {
		return fmt.Errorf("validity window ends (%s) before it starts (%s)", formatDate(n.To), formatDate(n.From))
	}
	return nil
}

// Contains reports whether the calendar date of t lies in the window.
func (w Window) Contains(t time.Time) bool {
	d := civilDate(t)
	n := w.normalize()
	if !n.From.IsZero() && d.Before(n.From) {
		return false
	}
	if !n.To.IsZero() && d.After(n.To) {
		return false
	}
	return true
}

// String shows the window as "2025-10-01..2026-09-30", with "…" for an open end.
func (w Window) String() string {
	n := w.normalize()
	from, to := "…", "…"
	if !n.From.IsZero() {
		from = formatDate(n.From)
	}
	if !n.To.IsZero() {
		to = formatDate(n.To)
	}
	return from + ".." + to
}

func formatDate(t time.Time) string { return t.Format(time.DateOnly) }

// OrderEntry is one line of the CMS ICD-10-CM order file.
type OrderEntry struct {
	// Order is the line's sequence number in the tabular list.
	Order int
	// Code is undotted (E119).
	Code string
	// Billable is true when CMS marks the code valid for HIPAA-covered
	// transactions (flag 1) and false for a header (flag 0): a category or
	// subcategory that has more specific codes below it.
	Billable bool
	// Short is the abbreviated description (at most 60 characters).
	Short string
	// Long is the full description.
	Long string
}

// The order file's fixed columns, 0-based byte offsets. CMS documents them as
// 1-based positions: order number 1-5 (right-justified, zero-filled), blank 6,
// code 7-13 (left-justified, blank-padded, no dot), blank 14, flag 15, blank 16,
// short description 17-76, blank 77, long description from 78.
const (
	orderNumEnd  = 5
	codeStart    = 6
	codeEnd      = 13
	flagPos      = 14
	shortStart   = 16
	shortEnd     = 76
	longStart    = 77
	maxLineBytes = 4096 // the longest real line is under 400 bytes
)

// ParseError is a malformed order file or code list line. Line is 1-based.
// The message quotes no file content beyond the offending code, which is a
// public code, never PHI.
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ParseOrderLine parses one line of the order file, without its line ending.
func ParseOrderLine(line string) (OrderEntry, error) {
	var e OrderEntry
	if len(line) <= longStart {
		return e, fmt.Errorf("line is %d bytes long; a line has at least %d (through the long description)", len(line), longStart+1)
	}
	// The columns are byte positions, so the fixed part must be ASCII: a
	// multi-byte character there would shift every later column.
	for i := 0; i < longStart; i++ {
		if line[i] < 0x20 || line[i] > 0x7e {
			return e, fmt.Errorf("column %d: non-printable or non-ASCII byte in the fixed-width columns", i+1)
		}
	}
	num := line[:orderNumEnd]
	for i := 0; i < len(num); i++ {
		if !isDigit(num[i]) {
			return e, errors.New("columns 1-5: order number must be five digits")
		}
	}
	e.Order, _ = strconv.Atoi(num)
	if e.Order == 0 {
		return e, errors.New("columns 1-5: order number must not be zero")
	}
	if line[orderNumEnd] != ' ' || line[codeEnd] != ' ' || line[flagPos+1] != ' ' || line[shortEnd] != ' ' {
		return e, errors.New("columns 6, 14, 16 and 77 must be blank")
	}
	field := line[codeStart:codeEnd]
	code := strings.TrimRight(field, " ")
	if code == "" || strings.IndexByte(code, ' ') >= 0 {
		return e, errors.New("columns 7-13: code must be left-justified with no blanks inside")
	}
	if err := checkICD10CMShape(code); err != nil {
		return e, fmt.Errorf("columns 7-13: %q: %v", code, err)
	}
	e.Code = code
	switch line[flagPos] {
	case '0':
		e.Billable = false
	case '1':
		e.Billable = true
	default:
		return e, errors.New("column 15: header flag must be 0 (header) or 1 (billable)")
	}
	e.Short = strings.TrimRight(line[shortStart:shortEnd], " ")
	if e.Short == "" || e.Short[0] == ' ' {
		return e, errors.New("columns 17-76: short description must be left-justified and not empty")
	}
	long := strings.TrimRight(line[longStart:], " \t")
	if long == "" || long[0] == ' ' {
		return e, errors.New("column 78: long description must start there and not be empty")
	}
	if !utf8.ValidString(long) {
		return e, errors.New("long description is not valid UTF-8")
	}
	for _, r := range long {
		if r < 0x20 || r == 0x7f {
			return e, errors.New("long description contains a control character")
		}
	}
	e.Long = long
	return e, nil
}

// ReadOrderFile reads a CMS ICD-10-CM order file (icd10cm_order_YYYY.txt)
// and calls fn for every entry in file order. It stops at the first malformed
// line with a *ParseError naming the line, or at the first error fn returns.
//
// Beyond each line's columns it checks what holds across lines in every CMS
// release: order numbers strictly increase, no code appears twice, and a
// billable code is a leaf, so the line after it never extends it (the file
// lists children directly under their parent). A file that breaks these is
// damaged or is not an ICD-10-CM order file, and loading part of it would be
// worse than loading none.
func ReadOrderFile(r io.Reader, fn func(OrderEntry) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxLineBytes)
	seen := make(map[string]int)
	lineNo, lastOrder := 0, 0
	var prev OrderEntry
	for sc.Scan() {
		lineNo++
		raw := sc.Bytes()
		raw = bytes.TrimSuffix(raw, []byte{'\r'})
		if lineNo == 1 && bytes.HasPrefix(raw, []byte("\xef\xbb\xbf")) {
			return &ParseError{Line: lineNo, Msg: "file starts with a byte-order mark; the order file is plain ASCII"}
		}
		e, err := ParseOrderLine(string(raw))
		if err != nil {
			return &ParseError{Line: lineNo, Msg: err.Error()}
		}
		if e.Order <= lastOrder {
			return &ParseError{Line: lineNo, Msg: fmt.Sprintf("order number %d does not follow %d", e.Order, lastOrder)}
		}
		if first, dup := seen[e.Code]; dup {
			return &ParseError{Line: lineNo, Msg: fmt.Sprintf("code %s already appeared on line %d", DottedICD10CM(e.Code), first)}
		}
		if lineNo > 1 && prev.Billable && strings.HasPrefix(e.Code, prev.Code) {
			return &ParseError{Line: lineNo, Msg: fmt.Sprintf("code %s extends %s, which the line before marks billable (billable codes have no children)", DottedICD10CM(e.Code), DottedICD10CM(prev.Code))}
		}
		seen[e.Code] = lineNo
		lastOrder = e.Order
		prev = e
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &ParseError{Line: lineNo + 1, Msg: fmt.Sprintf("line is longer than %d bytes", maxLineBytes)}
		}
		return fmt.Errorf("read order file: %w", err)
	}
	if lineNo == 0 {
		return &ParseError{Line: 1, Msg: "file is empty"}
	}
	return nil
}

func icd10cmFormat(code string) *problem {
	if _, err := NormalizeICD10CM(code); err != nil {
		return &problem{ReasonMalformed, "not an ICD-10-CM code: " + err.Error()}
	}
	return nil
}
