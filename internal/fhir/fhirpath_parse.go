package fhir

import (
	"fmt"
	"strings"
	"unicode"
)

// The FHIRPath subset's lexer and parser: source text to the fpNode tree
// that fhirpath.go evaluates.

// ---- lexer ----

type fpToken struct {
	kind string // ident, string, number, op, var, eof
	text string
}

func fpLex(src string) ([]fpToken, error) {
	var toks []fpToken
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != '\''; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
					switch src[j] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					default:
						b.WriteByte(src[j])
					}
					continue
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated string")
			}
			toks = append(toks, fpToken{"string", b.String()})
			i = j + 1
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' && j+1 < len(src) && src[j+1] >= '0' && src[j+1] <= '9') {
				j++
			}
			toks = append(toks, fpToken{"number", src[i:j]})
			i = j
		case c == '%' || c == '$' || c == '_' || unicode.IsLetter(rune(c)) || c == '`':
			j := i + 1
			if c == '`' {
				for j < len(src) && src[j] != '`' {
					j++
				}
				toks = append(toks, fpToken{"ident", src[i+1 : j]})
				i = j + 1
				continue
			}
			for j < len(src) && (src[j] == '_' || unicode.IsLetter(rune(src[j])) || unicode.IsDigit(rune(src[j]))) {
				j++
			}
			kind := "ident"
			if c == '%' || c == '$' {
				kind = "var"
			}
			toks = append(toks, fpToken{kind, src[i:j]})
			i = j
		default:
			two := ""
			if i+1 < len(src) {
				two = src[i : i+2]
			}
			switch two {
			case "!=", "<=", ">=", "!~":
				toks = append(toks, fpToken{"op", two})
				i += 2
				continue
			}
			if strings.ContainsRune(".()[],=<>|&+-*/~{}", rune(c)) {
				toks = append(toks, fpToken{"op", string(c)})
				i++
				continue
			}
			return nil, fmt.Errorf("unexpected %q", c)
		}
	}
	return append(toks, fpToken{kind: "eof"}), nil
}

// ---- parser ----

type fpParser struct {
	toks []fpToken
	pos  int
}

func (p *fpParser) peek() fpToken { return p.toks[p.pos] }

func (p *fpParser) next() fpToken {
	t := p.toks[p.pos]
	if p.pos < len(p.toks)-1 {
		p.pos++
	}
	return t
}

func (p *fpParser) isOp(text string) bool {
	t := p.peek()
	return (t.kind == "op" || t.kind == "ident") && t.text == text
}

func (p *fpParser) expect(text string) error {
	if !p.isOp(text) {
		return fmt.Errorf("expected %q, got %q", text, p.peek().text)
	}
	p.next()
	return nil
}

// parseFHIRPath parses an expression of the supported subset.
func parseFHIRPath(src string) (fpNode, error) {
	toks, err := fpLex(src)
	if err != nil {
		return nil, err
	}
	p := &fpParser{toks: toks}
	n, err := p.binary(0)
	if err != nil {
		return nil, err
	}
	if p.peek().kind != "eof" {
		return nil, fmt.Errorf("trailing %q", p.peek().text)
	}
	return n, nil
}

// precedence levels, lowest first.
var fpLevels = [][]string{
	{"implies"},
	{"or", "xor"},
	{"and"},
	{"in", "contains"},
	{"=", "!=", "~", "!~"},
	{"<", ">", "<=", ">="},
	{"|"},
	{"is", "as"},
	{"+", "-", "&"},
	{"*", "/", "div", "mod"},
}

func (p *fpParser) binary(level int) (fpNode, error) {
	if level == len(fpLevels) {
		return p.unary()
	}
	left, err := p.binary(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		op := ""
		for _, o := range fpLevels[level] {
			if p.isOp(o) {
				op = o
			}
		}
		if op == "" {
			return left, nil
		}
		p.next()
		if op == "is" || op == "as" {
			t := p.next()
			if t.kind != "ident" {
				return nil, fmt.Errorf("type name expected")
			}
			name := t.text
			for p.isOp(".") { // System.Boolean, FHIR.boolean
				p.next()
				name = p.next().text
			}
			left = &fpTypeOp{op: op, expr: left, typ: name}
			continue
		}
		right, err := p.binary(level + 1)
		if err != nil {
			return nil, err
		}
		left = &fpBinary{op: op, left: left, right: right}
	}
}

func (p *fpParser) unary() (fpNode, error) {
	if p.isOp("-") {
		p.next()
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &fpBinary{op: "-", left: &fpLiteral{items: fpCollection{{v: &jsonValue{kind: jsonNumber, text: "0"}}}}, right: n}, nil
	}
	if p.isOp("+") {
		p.next()
	}
	return p.postfix()
}

func (p *fpParser) postfix() (fpNode, error) {
	n, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isOp("."):
			p.next()
			t := p.next()
			if t.kind != "ident" {
				return nil, fmt.Errorf("name expected after '.'")
			}
			n, err = p.invocation(n, t.text)
			if err != nil {
				return nil, err
			}
		case p.isOp("["):
			p.next()
			idx, err := p.binary(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			n = &fpIndex{expr: n, index: idx}
		default:
			return n, nil
		}
	}
}

func (p *fpParser) invocation(recv fpNode, name string) (fpNode, error) {
	if !p.isOp("(") {
		return &fpMember{recv: recv, name: name}, nil
	}
	p.next()
	var args []fpNode
	for !p.isOp(")") {
		a, err := p.binary(0)
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		if p.isOp(",") {
			p.next()
		} else if !p.isOp(")") {
			return nil, fmt.Errorf("expected ',' or ')'")
		}
	}
	p.next()
	if !fpFunctions[name] {
		return nil, fmt.Errorf("function %s: %w", name, errUnsupported)
	}
	return &fpCall{recv: recv, name: name, args: args}, nil
}

func (p *fpParser) term() (fpNode, error) {
	t := p.next()
	switch t.kind {
	case "string":
		return &fpLiteral{items: fpCollection{{v: &jsonValue{kind: jsonString, text: t.text}, typ: "string"}}}, nil
	case "number":
		return &fpLiteral{items: fpCollection{{v: &jsonValue{kind: jsonNumber, text: t.text}}}}, nil
	case "var":
		return &fpVar{name: t.text}, nil
	case "ident":
		switch t.text {
		case "true", "false":
			return &fpLiteral{items: fpCollection{{v: &jsonValue{kind: jsonBool, b: t.text == "true"}}}}, nil
		}
		return p.invocation(nil, t.text)
	case "op":
		switch t.text {
		case "(":
			n, err := p.binary(0)
			if err != nil {
				return nil, err
			}
			return n, p.expect(")")
		case "{":
			return &fpLiteral{}, p.expect("}")
		}
	}
	return nil, fmt.Errorf("unexpected %q", t.text)
}
