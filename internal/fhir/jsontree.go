package fhir

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// FHIR JSON needs more from a decoder than encoding/json gives through
// interface{} values: object members in document order (so ids and meta can
// be set without reordering what a client sent), duplicate keys visible (FHIR
// forbids them, encoding/json silently keeps the last), numbers as their
// exact literal (a decimal's precision is part of its value: 1.50 is not 1.5)
// and null distinguishable from absence (primitive arrays pair with their
// _element companions by position). This small parser gives all four.

type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonNumber
	jsonString
	jsonObject
	jsonArray
)

func (k jsonKind) String() string {
	return [...]string{"null", "boolean", "number", "string", "object", "array"}[k]
}

// jsonValue is one parsed JSON value. text holds a string's decoded value or
// a number's literal.
type jsonValue struct {
	kind    jsonKind
	b       bool
	text    string
	members []jsonMember
	items   []jsonValue
}

type jsonMember struct {
	key string
	val jsonValue
}

// member returns the value of key in an object, or nil.
func (v *jsonValue) member(key string) *jsonValue {
	for i := range v.members {
		if v.members[i].key == key {
			return &v.members[i].val
		}
	}
	return nil
}

// maxDepth bounds nesting so hostile input cannot exhaust the stack; real
// resources (deep Questionnaires included) stay far below it.
const maxDepth = 200

// SyntaxError reports JSON that cannot be parsed, with the byte offset and,
// when it lies inside a member, the path to it ("name[0].given[1]"), made
// of member names and indexes only, never of values.
type SyntaxError struct {
	Offset int
	Msg    string
	Path   string
}

func (e *SyntaxError) Error() string {
	switch {
	case e.Offset < 0:
		return fmt.Sprintf("invalid JSON at %s: %s", e.Path, e.Msg)
	case e.Path != "":
		return fmt.Sprintf("invalid JSON at byte %d (%s): %s", e.Offset, e.Path, e.Msg)
	}
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

// inMember prefixes a syntax error's path with the member it occurred in,
// as the parser unwinds. A member name that could carry free text (see
// safePathKey) is not repeated.
func inMember(err error, key string) error {
	if se, ok := err.(*SyntaxError); ok {
		se.Path = joinPath(safePathKey(key), se.Path)
	}
	return err
}

// atIndex prefixes a syntax error's path with an array index.
func atIndex(err error, i int) error {
	if se, ok := err.(*SyntaxError); ok {
		se.Path = joinPath("["+strconv.Itoa(i)+"]", se.Path)
	}
	return err
}

func joinPath(head, rest string) string {
	if rest == "" || rest[0] == '[' {
		return head + rest
	}
	return head + "." + rest
}

type jsonParser struct {
	data  []byte
	pos   int
	depth int
	// members and items are scratch stacks: an object's members collect
	// here and are copied once into an exactly sized slice when the object
	// closes, instead of growing a slice per object.
	members []jsonMember
	items   []jsonValue
	// keys interns member names: a resource repeats a few dozen names
	// ("system", "code", "reference") hundreds of times.
	keys map[string]string
}

// utf8BOM is tolerated at the start of a document: RFC 8259 lets a parser
// ignore it, and files saved by common Windows tools carry one.
const utf8BOM = "\ufeff"

func stripBOM(data []byte) []byte {
	if len(data) >= 3 && string(data[:3]) == utf8BOM {
		return data[3:]
	}
	return data
}

func parseJSON(data []byte) (jsonValue, error) {
	p := &jsonParser{data: stripBOM(data), keys: map[string]string{}}
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return jsonValue{}, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return jsonValue{}, p.errorf("unexpected data after the top-level value")
	}
	return v, nil
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: p.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonParser) value() (jsonValue, error) {
	if p.pos >= len(p.data) {
		return jsonValue{}, p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		return jsonValue{kind: jsonString, text: s}, err
	case c == 't':
		return jsonValue{kind: jsonBool, b: true}, p.literal("true")
	case c == 'f':
		return jsonValue{kind: jsonBool}, p.literal("false")
	case c == 'n':
		return jsonValue{kind: jsonNull}, p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return jsonValue{}, p.errorf("unexpected character %q", c)
	}
}

func (p *jsonParser) literal(word string) error {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return p.errorf("invalid literal")
	}
	p.pos += len(word)
	return nil
}

func (p *jsonParser) object() (jsonValue, error) {
	p.depth++
	if p.depth > maxDepth {
		return jsonValue{}, p.errorf("nesting deeper than %d", maxDepth)
	}
	defer func() { p.depth-- }()
	p.pos++ // {
	v := jsonValue{kind: jsonObject}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return v, nil
	}
	base := len(p.members)
	defer func() { p.members = p.members[:base] }()
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return v, p.errorf("expected a member name")
		}
		key, err := p.key()
		if err != nil {
			return v, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return v, p.errorf("expected ':'")
		}
		p.pos++
		p.skipSpace()
		val, err := p.value()
		if err != nil {
			return v, inMember(err, key)
		}
		p.members = append(p.members, jsonMember{key: key, val: val})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return v, p.errorf("unexpected end of input in an object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			v.members = append([]jsonMember(nil), p.members[base:]...)
			return v, nil
		default:
			return v, p.errorf("expected ',' or '}'")
		}
	}
}

func (p *jsonParser) array() (jsonValue, error) {
	p.depth++
	if p.depth > maxDepth {
		return jsonValue{}, p.errorf("nesting deeper than %d", maxDepth)
	}
	defer func() { p.depth-- }()
	p.pos++ // [
	v := jsonValue{kind: jsonArray}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return v, nil
	}
	base := len(p.items)
	defer func() { p.items = p.items[:base] }()
	for {
		p.skipSpace()
		item, err := p.value()
		if err != nil {
			return v, atIndex(err, len(p.items)-base)
		}
		p.items = append(p.items, item)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return v, p.errorf("unexpected end of input in an array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			v.items = append([]jsonValue(nil), p.items[base:]...)
			return v, nil
		default:
			return v, p.errorf("expected ',' or ']'")
		}
	}
}

func (p *jsonParser) number() (jsonValue, error) {
	start := p.pos
	d := p.data
	if d[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(d) && d[p.pos] >= '0' && d[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.pos < len(d) && d[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return jsonValue{}, p.errorf("invalid number")
	}
	if p.pos < len(d) && d[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return jsonValue{}, p.errorf("invalid number")
		}
	}
	if p.pos < len(d) && (d[p.pos] == 'e' || d[p.pos] == 'E') {
		p.pos++
		if p.pos < len(d) && (d[p.pos] == '+' || d[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return jsonValue{}, p.errorf("invalid number")
		}
	}
	return jsonValue{kind: jsonNumber, text: string(d[start:p.pos])}, nil
}

var errBadUTF8 = errors.New("invalid UTF-8 in a string")

// key reads a member name, interned when it has no escapes.
func (p *jsonParser) key() (string, error) {
	start := p.pos + 1
	for i := start; i < len(p.data); i++ {
		c := p.data[i]
		if c == '"' {
			raw := p.data[start:i]
			if k, ok := p.keys[string(raw)]; ok {
				p.pos = i + 1
				return k, nil
			}
			k, err := p.str()
			if err == nil {
				p.keys[k] = k
			}
			return k, err
		}
		if c == '\\' || c < 0x20 {
			break
		}
	}
	return p.str()
}

func (p *jsonParser) str() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	d := p.data
	// Fast path: no escapes.
	for p.pos < len(d) {
		c := d[p.pos]
		if c == '"' {
			s := d[start:p.pos]
			p.pos++
			if !utf8.Valid(s) {
				return "", &SyntaxError{Offset: start, Msg: errBadUTF8.Error()}
			}
			return string(s), nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", p.errorf("control character in a string")
		}
		p.pos++
	}
	buf := append([]byte(nil), d[start:p.pos]...)
	for p.pos < len(d) {
		c := d[p.pos]
		switch {
		case c == '"':
			p.pos++
			if !utf8.Valid(buf) {
				return "", &SyntaxError{Offset: start, Msg: errBadUTF8.Error()}
			}
			return string(buf), nil
		case c < 0x20:
			return "", p.errorf("control character in a string")
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		p.pos++
		if p.pos >= len(d) {
			break
		}
		e := d[p.pos]
		p.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// A surrogate must pair with the next \u escape. A lone one
				// is no character at all: encoding/json silently turns it
				// into U+FFFD, which would store something the client never
				// sent; I-JSON (RFC 7493 §2.1) forbids it, and so do we.
				at := p.pos - 6
				if p.pos+1 < len(d) && d[p.pos] == '\\' && d[p.pos+1] == 'u' {
					p.pos += 2
					r2, ok2 := p.hex4()
					if !ok2 {
						return "", p.errorf("invalid \\u escape")
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						buf = utf8.AppendRune(buf, dec)
						continue
					}
				}
				return "", &SyntaxError{Offset: at, Msg: "unpaired UTF-16 surrogate in a \\u escape"}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", p.errorf("invalid escape \\%c", e)
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.data)-p.pos < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.data[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.pos += 4
	return rune(n), true
}

// appendJSON writes v as compact JSON. Strings are re-escaped minimally and
// numbers are written as their original literal, so parse → append keeps
// every value exactly (the bytes differ only in whitespace and escapes).
func appendJSON(buf []byte, v *jsonValue) []byte {
	switch v.kind {
	case jsonNull:
		return append(buf, "null"...)
	case jsonBool:
		if v.b {
			return append(buf, "true"...)
		}
		return append(buf, "false"...)
	case jsonNumber:
		return append(buf, v.text...)
	case jsonString:
		return appendJSONString(buf, v.text)
	case jsonArray:
		buf = append(buf, '[')
		for i := range v.items {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSON(buf, &v.items[i])
		}
		return append(buf, ']')
	default:
		buf = append(buf, '{')
		for i := range v.members {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, v.members[i].key)
			buf = append(buf, ':')
			buf = appendJSON(buf, &v.members[i].val)
		}
		return append(buf, '}')
	}
}

const hexDigits = "0123456789abcdef"

func appendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			buf = append(buf, '\\', c)
		case c == '\n':
			buf = append(buf, '\\', 'n')
		case c == '\r':
			buf = append(buf, '\\', 'r')
		case c == '\t':
			buf = append(buf, '\\', 't')
		case c < 0x20:
			buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '"')
}
