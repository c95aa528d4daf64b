package fhir

import (
	"errors"
	"fmt"
	"time"
)

// Envelope is the part of a resource the server owns: its type, logical id
// and version metadata. Everything else in the JSON belongs to the client
// and is kept as sent.
type Envelope struct {
	ResourceType string
	ID           string
	// VersionID and LastUpdated come from meta; empty when absent.
	VersionID   string
	LastUpdated string
}

// LastUpdatedTime parses LastUpdated (an R4 instant).
func (e Envelope) LastUpdatedTime() (time.Time, error) {
	return time.Parse(time.RFC3339Nano, e.LastUpdated)
}

// ErrNotResource is returned for JSON that is not a resource (not an object,
// or without a resourceType string).
var ErrNotResource = errors.New("not a FHIR resource: expected a JSON object with a resourceType")

// ReadEnvelope reads resourceType, id, meta.versionId and meta.lastUpdated
// from raw without interpreting anything else.
func ReadEnvelope(raw []byte) (Envelope, error) {
	v, err := parseJSON(raw)
	if err != nil {
		return Envelope{}, err
	}
	return envelopeOf(&v)
}

func envelopeOf(v *jsonValue) (Envelope, error) {
	if v.kind != jsonObject {
		return Envelope{}, ErrNotResource
	}
	rt := v.member("resourceType")
	if rt == nil || rt.kind != jsonString || rt.text == "" {
		return Envelope{}, ErrNotResource
	}
	e := Envelope{ResourceType: rt.text}
	if id := v.member("id"); id != nil && id.kind == jsonString {
		e.ID = id.text
	}
	if meta := v.member("meta"); meta != nil && meta.kind == jsonObject {
		if vid := meta.member("versionId"); vid != nil && vid.kind == jsonString {
			e.VersionID = vid.text
		}
		if lu := meta.member("lastUpdated"); lu != nil && lu.kind == jsonString {
			e.LastUpdated = lu.text
		}
	}
	return e, nil
}

// FormatInstant writes t as an R4 instant in UTC, with as many fractional
// digits as t carries.
func FormatInstant(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// SetIDAndMeta returns raw with id, meta.versionId and meta.lastUpdated set.
// Every other element, meta's other members (profile, security, tag, ...)
// included, keeps its value and its place; a new id goes right after
// resourceType and a new meta right after id, where FHIR's own examples put
// them. The result is compact JSON.
func SetIDAndMeta(raw []byte, id, versionID string, lastUpdated time.Time) ([]byte, error) {
	v, err := parseJSON(raw)
	if err != nil {
		return nil, err
	}
	if _, err := envelopeOf(&v); err != nil {
		return nil, err
	}
	if id != "" && !idRE.MatchString(id) {
		return nil, fmt.Errorf("set id: %q is not a valid FHIR id", id)
	}
	if id != "" {
		setMember(&v, "id", jsonValue{kind: jsonString, text: id}, "resourceType")
	}
	meta := v.member("meta")
	if meta == nil || meta.kind != jsonObject {
		setMember(&v, "meta", jsonValue{kind: jsonObject}, "id")
		meta = v.member("meta")
	}
	if versionID != "" {
		setMember(meta, "versionId", jsonValue{kind: jsonString, text: versionID}, "")
	}
	if !lastUpdated.IsZero() {
		setMember(meta, "lastUpdated", jsonValue{kind: jsonString, text: FormatInstant(lastUpdated)}, "versionId")
	}
	return appendJSON(make([]byte, 0, len(raw)+64), &v), nil
}

// setMember replaces key's value in place, or inserts key after the member
// named after (at the front when after is absent or "").
func setMember(obj *jsonValue, key string, val jsonValue, after string) {
	for i := range obj.members {
		if obj.members[i].key == key {
			obj.members[i].val = val
			return
		}
	}
	at := 0
	for i := range obj.members {
		if obj.members[i].key == after {
			at = i + 1
			break
		}
	}
	if after == "" {
		at = len(obj.members)
	}
	obj.members = append(obj.members, jsonMember{})
	copy(obj.members[at+1:], obj.members[at:])
	obj.members[at] = jsonMember{key: key, val: val}
}

// JSONEqual reports whether a and b hold the same JSON value: objects equal
// regardless of member order, arrays in order, strings after unescaping,
// numbers by their exact literal (FHIR decimals keep their precision, so
// 1.50 and 1.5 differ). It is how a round trip is judged.
func JSONEqual(a, b []byte) (bool, error) {
	va, err := parseJSON(a)
	if err != nil {
		return false, err
	}
	vb, err := parseJSON(b)
	if err != nil {
		return false, err
	}
	return equalValues(&va, &vb), nil
}

func equalValues(a, b *jsonValue) bool {
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case jsonNull:
		return true
	case jsonBool:
		return a.b == b.b
	case jsonNumber, jsonString:
		return a.text == b.text
	case jsonArray:
		if len(a.items) != len(b.items) {
			return false
		}
		for i := range a.items {
			if !equalValues(&a.items[i], &b.items[i]) {
				return false
			}
		}
		return true
	default:
		if len(a.members) != len(b.members) {
			return false
		}
		inOrder := true
		for i := range a.members {
			if a.members[i].key != b.members[i].key {
				inOrder = false
				break
			}
		}
		if inOrder {
			// Same keys in the same order: compare pairwise, which also
			// gives the right answer when a key is duplicated.
			for i := range a.members {
				if !equalValues(&a.members[i].val, &b.members[i].val) {
					return false
				}
			}
			return true
		}
		for i := range a.members {
			m := b.member(a.members[i].key)
			if m == nil || !equalValues(&a.members[i].val, m) {
				return false
			}
		}
		return true
	}
}
