package terminology

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// CPTCategory is the kind of CPT code, told by its fifth character.
type CPTCategory string

// The CPT code kinds.
const (
	CPTCategoryI   CPTCategory = "category-I"   // 5 digits: services and procedures
	CPTCategoryII  CPTCategory = "category-II"  // 4 digits + F: performance measurement
	CPTCategoryIII CPTCategory = "category-III" // 4 digits + T: emerging technology
	CPTPLA         CPTCategory = "pla"          // 4 digits + U: proprietary laboratory analyses
	CPTMAAA        CPTCategory = "maaa"         // 4 digits + M: multianalyte assays with algorithmic analyses
)

// ParseCPT checks the format of a CPT code and tells its kind. It says
// nothing about whether the code exists: that needs the AMA's list, which
// careflow does not ship.
func ParseCPT(code string) (CPTCategory, error) {
	if len(code) != 5 {
		return "", errors.New("a CPT code has 5 characters")
	}
	if err := allDigits(code[:4]); err != nil {
		return "", errors.New("a CPT code starts with 4 digits")
	}
	switch c := code[4]; {
	case isDigit(c):
		return CPTCategoryI, nil
	case c == 'F':
		return CPTCategoryII, nil
	case c == 'T':
		return CPTCategoryIII, nil
	case c == 'U':
		return CPTPLA, nil
	case c == 'M':
		return CPTMAAA, nil
	}
	return "", errors.New("the fifth character of a CPT code is a digit, F, T, U or M")
}

// ParseHCPCS checks the format of a HCPCS Level II code: one letter and four
// digits. CMS uses the letters A to V except F, I, N and O (D is the ADA's
// dental range, U holds laboratory test codes). W to Z were the state
// Medicaid agencies' Level III local codes, retired under HIPAA, and are not
// national codes, so they are refused.
func ParseHCPCS(code string) error {
	if len(code) != 5 {
		return errors.New("a HCPCS Level II code has 5 characters")
	}
	switch c := code[0]; {
	case !isUpper(c):
		return errors.New("a HCPCS Level II code starts with an upper-case letter")
	case c > 'V' || c == 'F' || c == 'I' || c == 'N' || c == 'O':
		return fmt.Errorf("no HCPCS Level II codes start with %c (the letters are A-V except F, I, N, O)", c)
	}
	if err := allDigits(code[1:]); err != nil {
		return errors.New("a HCPCS Level II code is a letter and 4 digits")
	}
	return nil
}

func cptFormat(code string) *problem {
	if _, err := ParseCPT(code); err != nil {
		return &problem{ReasonMalformed, "not a CPT code: " + err.Error()}
	}
	return nil
}

func hcpcsFormat(code string) *problem {
	if err := ParseHCPCS(code); err != nil {
		return &problem{ReasonMalformed, "not a HCPCS Level II code: " + err.Error()}
	}
	return nil
}

// ListEntry is one code of a loadable code list.
type ListEntry struct {
	Code    string
	Display string // may be empty (a CPT list without the AMA's descriptions)
}

// maxDisplayLen bounds a display from a code list; real ones are far shorter.
const maxDisplayLen = 2000

// ReadCodeList reads a code list for system: one code per line, optionally
// followed by its display, separated by a comma (CSV, quotes allowed) or a
// tab. The delimiter is the one the first record uses. A first line of
// "code,description" (or "code<TAB>display") is a header and skipped; lines
// starting with # are comments. Every code must pass the system's format
// rules (check digits included) and appear once. fn is called for each entry
// in file order; a bad line stops the read with a *ParseError.
func ReadCodeList(system string, r io.Reader, fn func(ListEntry) error) error {
	info, ok := knownSystems[system]
	if !ok || !info.loadable {
		return fmt.Errorf("code lists can be loaded for CPT, HCPCS, LOINC and SNOMED CT, not %q", system)
	}
	br := newPeekReader(r)
	delim, err := br.delimiter()
	if err != nil {
		return err
	}
	cr := csv.NewReader(br)
	cr.Comma = delim
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	seen := make(map[string]int)
	first := true
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return &ParseError{Line: pe.StartLine, Msg: pe.Err.Error()}
			}
			return fmt.Errorf("read code list: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			if isListHeader(rec) {
				continue
			}
		}
		if len(rec) > 2 {
			return &ParseError{Line: line, Msg: fmt.Sprintf("%d fields; a line is a code and an optional display", len(rec))}
		}
		e := ListEntry{Code: strings.TrimSpace(rec[0])}
		if len(rec) == 2 {
			e.Display = strings.TrimSpace(rec[1])
		}
		if e.Code == "" {
			return &ParseError{Line: line, Msg: "empty code"}
		}
		if p := info.checkFormat(e.Code); p != nil {
			return &ParseError{Line: line, Msg: fmt.Sprintf("%q: %s", e.Code, p.msg)}
		}
		if !utf8.ValidString(e.Display) || len(e.Display) > maxDisplayLen {
			return &ParseError{Line: line, Msg: fmt.Sprintf("display is not valid UTF-8 or is longer than %d bytes", maxDisplayLen)}
		}
		if strings.IndexFunc(e.Display, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return &ParseError{Line: line, Msg: "display contains a control character"}
		}
		if prev, dup := seen[e.Code]; dup {
			return &ParseError{Line: line, Msg: fmt.Sprintf("code %s already appeared on line %d", e.Code, prev)}
		}
		seen[e.Code] = line
		if err := fn(e); err != nil {
			return err
		}
	}
	if len(seen) == 0 {
		return &ParseError{Line: 1, Msg: "the list has no codes"}
	}
	return nil
}

func isListHeader(rec []string) bool {
	if len(rec) == 0 || !strings.EqualFold(strings.TrimSpace(rec[0]), "code") {
		return false
	}
	if len(rec) == 1 {
		return true
	}
	h := strings.ToLower(strings.TrimSpace(rec[1]))
	return h == "description" || h == "display"
}

// peekReader lets ReadCodeList look at the first line to pick a delimiter
// without buffering the whole file.
type peekReader struct {
	r   io.Reader
	buf []byte
}

func newPeekReader(r io.Reader) *peekReader { return &peekReader{r: r} }

// delimiter reads up to the first non-comment line and reports a tab when it
// has one, a comma otherwise.
func (p *peekReader) delimiter() (rune, error) {
	chunk := make([]byte, 4096)
	for {
		if d, ok := firstLineDelimiter(p.buf); ok {
			return d, nil
		}
		if len(p.buf) > 1<<20 {
			return ',', nil
		}
		n, err := p.r.Read(chunk)
		p.buf = append(p.buf, chunk[:n]...)
		if errors.Is(err, io.EOF) {
			d, _ := firstLineDelimiter(append(p.buf, '\n'))
			return d, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read code list: %w", err)
		}
	}
}

// firstLineDelimiter looks at the first complete line that is neither empty
// nor a comment.
func firstLineDelimiter(b []byte) (rune, bool) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return ',', false
		}
		line := strings.TrimRight(string(b[:i]), "\r")
		b = b[i+1:]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.IndexByte(line, '\t') >= 0 {
			return '\t', true
		}
		return ',', true
	}
	return ',', false
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	}
	return p.r.Read(b)
}
