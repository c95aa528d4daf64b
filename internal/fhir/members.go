package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ErrNotObject is EachMember's error for a document that is not one JSON
// object.
var ErrNotObject = errors.New("fhir: not a JSON object")

// ElementName is the element a top-level key stands for: a primitive's
// extension sibling "_birthDate" belongs to birthDate, so field rules that
// keep or drop an element keep or drop both keys.
func ElementName(key string) string {
	if len(key) > 1 && key[0] == '_' {
		return key[1:]
	}
	return key
}

// EachMember calls fn with every top-level member of the JSON object doc,
// in document order: its key, the element the key belongs to (ElementName)
// and the value's original bytes, so a caller that copies members keeps
// them byte for byte. It fails with ErrNotObject unless doc is exactly one
// JSON object; fn's error stops the walk and is returned.
func EachMember(doc []byte, fn func(key, element string, val json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ErrNotObject
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return ErrNotObject
		}
		key, _ := kt.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return ErrNotObject
		}
		if err := fn(key, ElementName(key), val); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return ErrNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return ErrNotObject
	}
	return nil
}

// AppendMember writes one member, "key":val, to out, preceded by a comma
// unless first.
func AppendMember(out *bytes.Buffer, first bool, key string, val json.RawMessage) {
	if !first {
		out.WriteByte(',')
	}
	kb, _ := json.Marshal(key)
	out.Write(kb)
	out.WriteByte(':')
	out.Write(val)
}
