package fhir

import "errors"

// careflow holds every JSON body it takes, FHIR or not, to the I-JSON
// profile (RFC 7493) where plain JSON leaves behaviour open:
//
//   - no member name twice in one object (§2.3). encoding/json keeps the
//     last, other parsers the first, so a body with both
//     {"role":"nurse","role":"admin"} means different things to a proxy, a
//     validator and the server;
//   - no unpaired surrogate in a \u escape (§2.1). encoding/json turns it
//     into U+FFFD without a word, storing text the client never sent.
//
// The FHIR validator finds duplicates as it walks a resource (validate.go)
// and the parser refuses lone surrogates (jsontree.go). CheckJSON offers the
// same two rules, plus R4's rule against control characters in strings, to
// the JSON API, whose bodies are decoded into Go structs by encoding/json
// after this check has passed.

// duplicateMembers calls dup with the index of every member whose name an
// earlier member of the same object has. Small objects are scanned, larger
// ones go through a map, so no object costs quadratic time.
func duplicateMembers(ms []jsonMember, dup func(i int)) {
	if len(ms) <= 16 {
		for i := 1; i < len(ms); i++ {
			for j := 0; j < i; j++ {
				if ms[i].key == ms[j].key {
					dup(i)
					break
				}
			}
		}
		return
	}
	seen := make(map[string]bool, len(ms))
	for i := range ms {
		if seen[ms[i].key] {
			dup(i)
		}
		seen[ms[i].key] = true
	}
}

// safePathKey returns a member name for use in an error's path when it
// looks like a field name (a letter or _ and then up to 63 letters, digits,
// _ or -), and "?" otherwise: member names are the client's text, and one
// like "Fatma Hassan 1961-07-13" must not reach an error message, and from
// there the logs.
func safePathKey(key string) string {
	if key == "" || len(key) > 64 {
		return "?"
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-'):
		default:
			return "?"
		}
	}
	return key
}

// malformed is the one fatal issue of a body that is not acceptable JSON,
// naming the member where the parser stopped when it was inside one.
func malformed(err error) Issues {
	is := OutcomeIssue{Severity: SeverityFatal, Code: IssueInvalid, Diagnostics: err.Error()}
	var se *SyntaxError
	if errors.As(err, &se) && se.Path != "" {
		is.Expression = []string{se.Path}
	}
	return Issues{is}
}

// CheckJSON checks one JSON document against the I-JSON rules above and
// R4's rule for strings (no control characters below U+0020 but tab, CR and
// LF, in values and member names alike). The error is a *SyntaxError whose
// Path names the member at fault ("consents[1].purpose") and whose message
// names the rule, never the value; Offset is where the parser stopped, or
// -1 for a rule checked after parsing.
func CheckJSON(raw []byte) error {
	v, err := parseJSON(raw)
	if err != nil {
		return err
	}
	return checkValue(&v, nil)
}

func checkValue(v *jsonValue, path *elemPath) error {
	switch v.kind {
	case jsonString:
		if msg := stringCharProblem(v.text); msg != "" {
			return &SyntaxError{Offset: -1, Msg: msg, Path: pathOrBody(path)}
		}
	case jsonArray:
		for i := range v.items {
			if err := checkValue(&v.items[i], path.at(i)); err != nil {
				return err
			}
		}
	case jsonObject:
		var dup *SyntaxError
		duplicateMembers(v.members, func(i int) {
			if dup == nil {
				dup = &SyntaxError{Offset: -1, Msg: "a member name appears twice in one object",
					Path: pathOrBody(path.child(safePathKey(v.members[i].key)))}
			}
		})
		if dup != nil {
			return dup
		}
		for i := range v.members {
			m := &v.members[i]
			at := path.child(safePathKey(m.key))
			if msg := stringCharProblem(m.key); msg != "" {
				return &SyntaxError{Offset: -1, Msg: "a member name: " + msg, Path: pathOrBody(at)}
			}
			if err := checkValue(&m.val, at); err != nil {
				return err
			}
		}
	}
	return nil
}

func pathOrBody(p *elemPath) string {
	if s := p.String(); s != "" {
		return s
	}
	return "(body)"
}
