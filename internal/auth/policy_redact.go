package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"

	"github.com/careflow/careflow/internal/fhir"
)

// Redact removes from a resource's JSON every top-level element the
// principal's role may not see when reading that resource type for the
// role's default purpose. It is the field half of the policy, applied to
// every record a response carries.
func (p *Policy) Redact(pr *Principal, resourceType string, doc []byte) ([]byte, error) {
	if pr == nil {
		return nil, errors.New("redact: no principal")
	}
	return p.RedactFields(p.VisibleFields(pr.Role, resourceType, p.DefaultPurpose(pr.Role)), doc)
}

// ElementVisible reports whether a role reading resourceType for a purpose
// sees the top-level element: whether Redact keeps it. It is the field
// half of the policy asked the other way round, for what a request may
// reach through an element rather than what a response shows: a search
// parameter, a sort or an include over an element the role may not see
// would reveal the element's values through which records match, so the
// record refuses them when this is false. Of a type the role may not read
// for the purpose, only the always-visible elements (id, meta) show.
func (p *Policy) ElementVisible(r Role, resourceType string, pu Purpose, element string) bool {
	return p.shows(p.VisibleFields(r, resourceType, pu), element)
}

// shows is the one test of an element against a visible-field list (nil:
// every element) and the always-visible elements.
func (p *Policy) shows(fields []string, element string) bool {
	return fields == nil || p.alwaysShown[element] || slices.Contains(fields, element)
}

// RedactFields keeps only the listed top-level elements (plus the policy's
// always-visible ones such as resourceType and id) of a JSON object. A nil
// list keeps everything and returns doc unchanged. Element order and the
// kept values' bytes are preserved, so a redacted record differs from the
// stored one only by what was removed. A FHIR primitive's extension
// sibling ("_birthDate") follows its element.
func (p *Policy) RedactFields(fields []string, doc []byte) ([]byte, error) {
	if fields == nil {
		return doc, nil
	}
	var out bytes.Buffer
	out.Grow(len(doc))
	out.WriteByte('{')
	first := true
	err := fhir.EachMember(doc, func(key, element string, val json.RawMessage) error {
		if p.shows(fields, element) {
			fhir.AppendMember(&out, first, key, val)
			first = false
		}
		return nil
	})
	if err != nil {
		return nil, errors.New("redact: record is not a JSON object")
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}
