package hcx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/payer"
)

// The protected header names of the HCX protocol.
const (
	HeaderSenderCode    = "x-hcx-sender_code"
	HeaderRecipientCode = "x-hcx-recipient_code"
	HeaderAPICallID     = "x-hcx-api_call_id"
	HeaderCorrelationID = "x-hcx-correlation_id"
	HeaderWorkflowID    = "x-hcx-workflow_id"
	HeaderTimestamp     = "x-hcx-timestamp"
	HeaderStatus        = "x-hcx-status"
	HeaderErrorDetails  = "x-hcx-error_details"
	HeaderDebugFlag     = "x-hcx-debug_flag"
	HeaderDebugDetails  = "x-hcx-debug_details"
)

// Header is the x-hcx-* part of a message's protected JWE header. It holds
// identifiers and codes, never PHI: it travels in clear (authenticated, not
// encrypted) and the exchange log stores it plain.
type Header struct {
	SenderCode    string
	RecipientCode string
	APICallID     string
	CorrelationID string
	WorkflowID    string // optional
	Timestamp     time.Time
	Status        string // optional on requests; see statuses
	// ErrorDetails is x-hcx-error_details of a response.error message: a
	// JSON object with code, message and trace.
	ErrorDetails json.RawMessage
	DebugFlag    string // optional: Error, Info or Debug
	DebugDetails json.RawMessage
}

// statuses are the x-hcx-status values the protocol defines.
var statuses = map[string]bool{
	payer.StatusRequestInitiated: true,
	payer.StatusRequestQueued:    true,
	payer.StatusRequestDispatch:  true,
	"request.stopped":            true,
	"request.retry":              true,
	payer.StatusResponseComplete: true,
	payer.StatusResponsePartial:  true,
	payer.StatusResponseError:    true,
	"response.redirect":          true,
}

var debugFlags = map[string]bool{"Error": true, "Info": true, "Debug": true}

// headerError is a header that does not satisfy the protocol, as the
// protocol's refusal: it names the header and the rule, never the value.
func headerError(code, name, rule string) *payer.Error {
	return &payer.Error{Code: code, Message: name + ": " + rule, HTTPStatus: 400}
}

// Validate checks what the protocol requires of every message: the sender,
// recipient, api_call_id, correlation_id and timestamp are present, the ids
// are UUIDs, and the optional status and debug flag are known values.
func (h Header) Validate() error {
	missing := func(name string) error {
		return headerError(ErrMandatoryHeaderMissing, name, "is mandatory")
	}
	switch {
	case h.SenderCode == "":
		return missing(HeaderSenderCode)
	case h.RecipientCode == "":
		return missing(HeaderRecipientCode)
	case h.APICallID == "":
		return missing(HeaderAPICallID)
	case h.CorrelationID == "":
		return missing(HeaderCorrelationID)
	case h.Timestamp.IsZero():
		return missing(HeaderTimestamp)
	}
	if !isUUID(h.APICallID) {
		return headerError(ErrInvalidAPICallID, HeaderAPICallID, "must be a UUID")
	}
	if !isUUID(h.CorrelationID) {
		return headerError(ErrInvalidCorrelationID, HeaderCorrelationID, "must be a UUID")
	}
	if h.WorkflowID != "" && !isUUID(h.WorkflowID) {
		return headerError(ErrInvalidWorkflowID, HeaderWorkflowID, "must be a UUID")
	}
	if h.Status != "" && !statuses[h.Status] {
		return headerError(ErrInvalidStatus, HeaderStatus, "is not a protocol status")
	}
	if h.Status == payer.StatusResponseError && len(h.ErrorDetails) == 0 {
		return headerError(ErrInvalidErrorDetails, HeaderErrorDetails, "is mandatory with status response.error")
	}
	if len(h.ErrorDetails) > 0 && !isJSONObject(h.ErrorDetails) {
		return headerError(ErrInvalidErrorDetails, HeaderErrorDetails, "must be a JSON object")
	}
	if h.DebugFlag != "" && !debugFlags[h.DebugFlag] {
		return headerError(ErrInvalidDebugFlag, HeaderDebugFlag, "must be Error, Info or Debug")
	}
	if len(h.DebugDetails) > 0 && !isJSONObject(h.DebugDetails) {
		return headerError(ErrInvalidDebugDetails, HeaderDebugDetails, "must be a JSON object")
	}
	return nil
}

// isUUID accepts the canonical 8-4-4-4-12 form of any version: HCX
// participants send v4 ids, careflow sends v5-style (APICallID) and v7.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil
}

// Fields returns the header as JWE protected header entries (the x-hcx-*
// names); absent optional headers are left out. The timestamp is written
// ISO-8601 with its zone offset, to the millisecond.
func (h Header) Fields() map[string]any {
	m := map[string]any{
		HeaderSenderCode:    h.SenderCode,
		HeaderRecipientCode: h.RecipientCode,
		HeaderAPICallID:     h.APICallID,
		HeaderCorrelationID: h.CorrelationID,
		HeaderTimestamp:     FormatTimestamp(h.Timestamp),
	}
	if h.WorkflowID != "" {
		m[HeaderWorkflowID] = h.WorkflowID
	}
	if h.Status != "" {
		m[HeaderStatus] = h.Status
	}
	if len(h.ErrorDetails) > 0 {
		m[HeaderErrorDetails] = h.ErrorDetails
	}
	if h.DebugFlag != "" {
		m[HeaderDebugFlag] = h.DebugFlag
	}
	if len(h.DebugDetails) > 0 {
		m[HeaderDebugDetails] = h.DebugDetails
	}
	return m
}

// FormatTimestamp writes an x-hcx-timestamp: ISO-8601 with the zone.
func FormatTimestamp(t time.Time) string {
	return t.Format("2006-01-02T15:04:05.000Z07:00")
}

// ParseTimestamp reads an x-hcx-timestamp as participants send it:
// ISO-8601 with a zone (RFC 3339, with or without fractions, offsets with or
// without a colon), or epoch milliseconds as a JSON number or string.
func ParseTimestamp(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, fmt.Errorf("empty")
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, fmt.Errorf("not a string")
		}
	} else {
		s = string(raw)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty")
	}
	if isDigits(s) {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("epoch milliseconds out of range")
		}
		return time.UnixMilli(ms), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("neither ISO-8601 with a zone nor epoch milliseconds")
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// ParseHeaderFields reads the x-hcx-* entries of a decoded protected header. It
// does not validate (Validate does): it reports only what cannot be read.
func ParseHeaderFields(m map[string]json.RawMessage) (Header, error) {
	var h Header
	str := func(name string, dst *string) error {
		raw, ok := m[name]
		if !ok || string(raw) == "null" {
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return headerError(codeForHeader(name), name, "must be a string")
		}
		return nil
	}
	for name, dst := range map[string]*string{
		HeaderSenderCode:    &h.SenderCode,
		HeaderRecipientCode: &h.RecipientCode,
		HeaderAPICallID:     &h.APICallID,
		HeaderCorrelationID: &h.CorrelationID,
		HeaderWorkflowID:    &h.WorkflowID,
		HeaderStatus:        &h.Status,
		HeaderDebugFlag:     &h.DebugFlag,
	} {
		if err := str(name, dst); err != nil {
			return Header{}, err
		}
	}
	if raw, ok := m[HeaderTimestamp]; ok {
		t, err := ParseTimestamp(raw)
		if err != nil {
			return Header{}, headerError(ErrInvalidTimestamp, HeaderTimestamp, err.Error())
		}
		h.Timestamp = t
	}
	if raw, ok := m[HeaderErrorDetails]; ok && string(raw) != "null" {
		h.ErrorDetails = append(json.RawMessage(nil), raw...)
	}
	if raw, ok := m[HeaderDebugDetails]; ok && string(raw) != "null" {
		h.DebugDetails = append(json.RawMessage(nil), raw...)
	}
	return h, nil
}

func codeForHeader(name string) string {
	switch name {
	case HeaderAPICallID:
		return ErrInvalidAPICallID
	case HeaderCorrelationID:
		return ErrInvalidCorrelationID
	case HeaderWorkflowID:
		return ErrInvalidWorkflowID
	case HeaderStatus:
		return ErrInvalidStatus
	case HeaderDebugFlag:
		return ErrInvalidDebugFlag
	case HeaderSenderCode:
		return ErrInvalidSender
	case HeaderRecipientCode:
		return ErrInvalidRecipient
	}
	return ErrInvalidPayload
}

// apiCallIDSpace is the UUID namespace of careflow's derived api_call_ids
// (itself a v5 UUID of the name "careflow.hcx.api_call_id" in the URL
// namespace), so the same idempotency key gives the same id on every node
// and every release.
var apiCallIDSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("careflow.hcx.api_call_id"))

// APICallID derives a message's api_call_id from the sending step's
// idempotency key: a version-5 UUID (SHA-1 of the namespace and the key),
// so a retried or re-delivered send presents the same id. The key is an
// opaque run/step identifier; the id does not reveal it.
func APICallID(key string) string {
	return uuid.NewSHA1(apiCallIDSpace, []byte(key)).String()
}
