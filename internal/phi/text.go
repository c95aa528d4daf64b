package phi

import (
	"fmt"
	"log/slog"
)

// Text holds one PHI value in memory: a name, an identifier, a birth date,
// a note. Every way the standard library has of turning a value into text
// for humans (fmt's verbs including %v, %s, %q, %x and %#v, slog, JSON and
// text marshalling) shows "[PHI redacted]", so a careless log line or an
// error built with %v cannot leak it. Reveal is the one door to the value,
// and grepping for it finds every place PHI leaves this type.
//
// The zero Text is the empty value.
type Text struct {
	// unexported so that reflection-based printers (fmt's %+v on an outer
	// struct, encoding/json) cannot reach it either.
	s string
}

const redactedText = "[PHI redacted]"

// NewText wraps a PHI value.
func NewText(s string) Text { return Text{s: s} }

// Reveal returns the value. Call it only where the value must leave: when
// sealing it, when writing it to an authorised response.
func (t Text) Reveal() string { return t.s }

// IsZero reports whether the value is empty; it reveals nothing else.
func (t Text) IsZero() bool { return t.s == "" }

func (Text) String() string             { return redactedText }
func (Text) GoString() string           { return redactedText }
func (Text) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redactedText)) }
func (Text) LogValue() slog.Value       { return slog.StringValue(redactedText) }

// MarshalText and MarshalJSON redact too: a Text that reaches a JSON encoder
// by accident shows the redaction marker, not the patient. Code that means to
// send the value writes Reveal() into its response type.
func (Text) MarshalText() ([]byte, error) { return []byte(redactedText), nil }
func (Text) MarshalJSON() ([]byte, error) { return []byte(`"` + redactedText + `"`), nil }
