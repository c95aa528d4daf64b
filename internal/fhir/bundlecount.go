package fhir

import "strings"

// BundleEntryCount says how many entries a Bundle has: what a batch or
// transaction will cost the server, known before any entry runs. It skims
// the top-level object without building values (a 3,000-entry batch would
// otherwise be parsed once more just to be counted) and does not validate:
// for well-formed JSON the count is exact, and anything else the write path
// refuses as a whole. Entries under a repeated "entry" key are all counted.
func BundleEntryCount(raw []byte) int {
	p := &jsonParser{data: stripBOM(raw)}
	p.skipSpace()
	if p.pos >= len(p.data) || p.data[p.pos] != '{' {
		return 0
	}
	p.pos++
	n := 0
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return n
		}
		start := p.pos
		if !p.skimString() {
			return n
		}
		key := string(p.data[start+1 : p.pos-1])
		if strings.IndexByte(key, '\\') >= 0 {
			// "entr\u0079" is "entry" too: decode escaped names, or a
			// batch could hide its entries from the count.
			p.pos = start
			k, err := p.str()
			if err != nil {
				return n
			}
			key = k
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return n
		}
		p.pos++
		p.skipSpace()
		if key == "entry" && p.pos < len(p.data) && p.data[p.pos] == '[' {
			n += p.skimArrayItems()
		} else if !p.skimValue() {
			return n
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ',' {
			return n
		}
		p.pos++
	}
}

// skimString moves past the string that starts at pos, escapes included,
// without decoding it.
func (p *jsonParser) skimString() bool {
	for i := p.pos + 1; i < len(p.data); i++ {
		switch p.data[i] {
		case '\\':
			i++
		case '"':
			p.pos = i + 1
			return true
		}
	}
	return false
}

// skimValue moves past the value at pos: a string, or an object or array
// by its brackets, or a literal up to the next delimiter.
func (p *jsonParser) skimValue() bool {
	if p.pos >= len(p.data) {
		return false
	}
	switch p.data[p.pos] {
	case '"':
		return p.skimString()
	case '{', '[':
		depth := 0
		for p.pos < len(p.data) {
			switch p.data[p.pos] {
			case '"':
				if !p.skimString() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					p.pos++
					return true
				}
			}
			p.pos++
		}
		return false
	}
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return true
		}
		p.pos++
	}
	return true
}

// skimArrayItems moves past the array at pos and counts its items.
func (p *jsonParser) skimArrayItems() int {
	p.pos++ // [
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return 0
	}
	n := 0
	for p.pos < len(p.data) {
		p.skipSpace()
		if !p.skimValue() {
			return n
		}
		n++
		p.skipSpace()
		if p.pos >= len(p.data) {
			return n
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return n
		default:
			return n
		}
	}
	return n
}
