package hcx

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/payer"
)

// The protocol's error codes (HCX error descriptions: the gateway's checks
// and the recipient's).
const (
	ErrAccessDenied           = "ERR_ACCESS_DENIED"
	ErrInvalidPayload         = "ERR_INVALID_PAYLOAD"
	ErrInvalidEncryption      = "ERR_INVALID_ENCRYPTION"
	ErrInvalidSender          = "ERR_INVALID_SENDER"
	ErrInvalidRecipient       = "ERR_INVALID_RECIPIENT"
	ErrWrongDomainPayload     = "ERR_WRONG_DOMAIN_PAYLOAD"
	ErrInvalidDomainPayload   = "ERR_INVALID_DOMAIN_PAYLOAD"
	ErrSenderNotSupported     = "ERR_SENDER_NOT_SUPPORTED"
	ErrMandatoryHeaderMissing = "ERR_MANDATORY_HEADER_MISSING"
	ErrInvalidAPICallID       = "ERR_INVALID_API_CALL_ID"
	ErrInvalidCorrelationID   = "ERR_INVALID_CORRELATION_ID"
	ErrInvalidTimestamp       = "ERR_INVALID_TIMESTAMP"
	ErrInvalidStatus          = "ERR_INVALID_STATUS"
	ErrInvalidDebugFlag       = "ERR_INVALID_DEBUG_FLAG"
	ErrInvalidErrorDetails    = "ERR_INVALID_ERROR_DETAILS"
	ErrInvalidDebugDetails    = "ERR_INVALID_DEBUG_DETAILS"
	ErrInvalidWorkflowID      = "ERR_INVALID_WORKFLOW_ID"
	ErrServiceUnavailable     = "ERR_SERVICE_UNAVAILABLE"
	ErrDomainProcessing       = "ERR_DOMAIN_PROCESSING"
	ErrInternalServerError    = "ERR_INTERNAL_SERVER_ERROR"
)

// MsgDuplicateAPICallID is the message that goes with ErrInvalidAPICallID
// when a message's api_call_id was already received (the HCX gateway says
// "already ... exists" in its words; careflow and the simulator say this).
// A sender that meets it knows an earlier attempt got through.
const MsgDuplicateAPICallID = "a message with this api_call_id was already received"

// IsDuplicateAPICallID reports whether a refusal says the api_call_id was
// already received (rather than malformed).
func IsDuplicateAPICallID(e *payer.Error) bool {
	return e != nil && e.Code == ErrInvalidAPICallID && strings.Contains(strings.ToLower(e.Message), "already")
}

// ProtocolResponse is the protocol's synchronous answer body: the
// acknowledgement of an accepted message (202, no error) or a refusal
// (4xx/5xx with error).
type ProtocolResponse struct {
	Timestamp     int64          `json:"timestamp"`
	APICallID     string         `json:"api_call_id,omitempty"`
	CorrelationID string         `json:"correlation_id,omitempty"`
	Error         *ResponseError `json:"error,omitempty"`
}

// ResponseError is the error object of a ProtocolResponse (and the shape of
// x-hcx-error_details).
type ResponseError struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	Trace   string `json:"trace,omitempty"`
}

// WriteAck writes the 202 acknowledgement of an accepted message.
func WriteAck(w http.ResponseWriter, h Header, now time.Time) {
	writeResponse(w, http.StatusAccepted, ProtocolResponse{Timestamp: now.UnixMilli(), APICallID: h.APICallID, CorrelationID: h.CorrelationID})
}

// WriteError writes a refusal as the protocol's ProtocolResponse, with the
// refusal's HTTP status (400 when it has none). h names the refused message
// when its headers could be read; the zero Header otherwise.
func WriteError(w http.ResponseWriter, h Header, e *payer.Error, now time.Time) {
	status := e.HTTPStatus
	if status == 0 {
		status = http.StatusBadRequest
	}
	writeResponse(w, status, ProtocolResponse{
		Timestamp: now.UnixMilli(), APICallID: h.APICallID, CorrelationID: h.CorrelationID,
		Error: &ResponseError{Code: e.Code, Message: e.Message},
	})
}

func writeResponse(w http.ResponseWriter, status int, body ProtocolResponse) {
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// maxResponse bounds what ReadError reads of an answer body.
const maxResponse = 64 << 10

// ReadError reads a gateway's or participant's answer (ReadAnswer of its
// status and body, at most 64 KiB of it).
func ReadError(resp *http.Response) (ProtocolResponse, error) {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	return ReadAnswer(resp.StatusCode, b)
}

// ReadAnswer reads an answer's status and body. A 2xx answer is the
// acknowledgement (nil error; the body's ids when it has them). Any other
// answer carrying a ProtocolResponse error is a *payer.Error with the
// answer's status; an answer without one (a proxy's 502 page, an empty
// 503) returns ErrNoProtocolError, which the caller treats as transient.
func ReadAnswer(status int, body []byte) (ProtocolResponse, error) {
	var pr ProtocolResponse
	decodeErr := json.Unmarshal(body, &pr)
	if status >= 200 && status < 300 {
		if decodeErr != nil {
			pr = ProtocolResponse{}
		}
		return pr, nil
	}
	if decodeErr != nil || pr.Error == nil || pr.Error.Code == "" {
		return ProtocolResponse{}, ErrNoProtocolError
	}
	return pr, &payer.Error{Code: pr.Error.Code, Message: pr.Error.Message, HTTPStatus: status}
}

// ErrNoProtocolError is an unsuccessful answer that is not a protocol
// refusal (no ProtocolResponse error in the body).
var ErrNoProtocolError = errors.New("hcx: unsuccessful answer without a protocol error")

// ErrorDetails encodes a refusal as x-hcx-error_details, for a
// response.error message sent back asynchronously.
func ErrorDetails(e *payer.Error) json.RawMessage {
	b, _ := json.Marshal(ResponseError{Code: e.Code, Message: e.Message})
	return b
}
