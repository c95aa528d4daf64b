// Package payer is the vocabulary careflow and payers share: the actions of
// the HCX protocol, a message careflow sends (Request), a message a payer
// sends back (Message), and a payer as the participant registry lists it.
// It holds no mechanism: internal/rcm declares the ports it needs in these
// terms (rcm.Payer, rcm.Directory), internal/payer/hcx implements them over
// the HCX protocol, and internal/payer/sim is the payer at the other end of
// the same protocol.
//
// Invariants:
//   - A Request's APICallID is derived from its IdempotencyKey, so a retried
//     or re-delivered send presents the same message id and the receiver
//     (the gateway, the payer) applies it once.
//   - A journey's exchanges share WorkflowID (the journey's id); one
//     exchange (a request and every answer to it) shares CorrelationID.
//   - Bundle bytes are PHI: they are never logged, never put in an error,
//     and stored only sealed.
package payer

import (
	"encoding/json"
	"time"
)

// Action is an HCX API action: the path under the gateway's (or a
// participant's) base URL, without the leading slash.
type Action string

// The HCX actions careflow uses. A request action and its on_* answer are
// one exchange.
const (
	EligibilityCheck       Action = "coverageeligibility/check"
	EligibilityOnCheck     Action = "coverageeligibility/on_check"
	PreauthSubmit          Action = "preauth/submit"
	PreauthOnSubmit        Action = "preauth/on_submit"
	ClaimSubmit            Action = "claim/submit"
	ClaimOnSubmit          Action = "claim/on_submit"
	CommunicationRequest   Action = "communication/request"    // payer → provider
	CommunicationOnRequest Action = "communication/on_request" // provider → payer
	PaymentNoticeRequest   Action = "paymentnotice/request"    // payer → provider
	PaymentNoticeOnRequest Action = "paymentnotice/on_request" // provider → payer
	StatusCheck            Action = "hcx/status"
	StatusOnCheck          Action = "hcx/on_status"
)

// The x-hcx-status values careflow sends and reads.
const (
	StatusRequestInitiated = "request.initiated"
	StatusRequestQueued    = "request.queued"
	StatusRequestDispatch  = "request.dispatched"
	StatusResponseComplete = "response.complete"
	StatusResponsePartial  = "response.partial"
	StatusResponseError    = "response.error"
)

// Request is one message careflow sends to a payer through the gateway.
type Request struct {
	Action Action
	// Recipient is the payer's participant code.
	Recipient string
	// CorrelationID names the exchange: every answer to this request
	// carries it back. Recorded by rcm before the request is sent, so an
	// answer never arrives for a correlation careflow does not know.
	CorrelationID string
	// WorkflowID names the journey: every exchange of one journey shares it.
	WorkflowID string
	// IdempotencyKey is the sending step's key (engine.StepContext's): the
	// message's api_call_id is derived from it.
	IdempotencyKey string
	// Status is x-hcx-status: request.initiated for a request,
	// response.complete (or .error) for an on_* answer careflow sends.
	Status string
	// Bundle is the FHIR R4 Bundle careflow sends, strictly valid.
	Bundle []byte
}

// Ack is the gateway's synchronous acknowledgement of a Request (HTTP 202).
type Ack struct {
	APICallID     string
	CorrelationID string
	Timestamp     time.Time
}

// Message is one message a payer sent careflow (a callback or a
// payer-initiated request), verified, decrypted and stored before anyone
// reads it.
type Message struct {
	Action        Action
	Sender        string
	Recipient     string
	APICallID     string
	CorrelationID string
	WorkflowID    string
	Status        string
	Timestamp     time.Time
	// Bundle is the decrypted payload as received (a FHIR Bundle, document
	// or collection); empty for a response.error message.
	Bundle []byte
	// ErrorDetails is x-hcx-error_details of a response.error message.
	ErrorDetails json.RawMessage
	// Warnings are the deviations from strict R4 noticed while reading the
	// Bundle (a Composition without author, no Bundle identifier...): kept on
	// the exchange, never a reason to refuse the payer's answer. They name
	// paths and rules, never values.
	Warnings []string
	// ExchangeID is the stored message's id in the exchange log.
	ExchangeID string
}

// Participant is an HCX participant as the registry lists it.
type Participant struct {
	Code   string   `json:"participant_code"`
	Name   string   `json:"participant_name"`
	Roles  []string `json:"roles"`
	Status string   `json:"status"`
	// EndpointURL is where the participant receives HCX calls.
	EndpointURL string `json:"endpoint_url,omitempty"`
}

// Error is the gateway's or the payer's refusal of a message: a protocol
// error (an HCX ProtocolResponse with its error code), answered
// synchronously. Sending the same message again cannot succeed, so a
// sender treats it as permanent. Any other error from a send (a network
// failure, a timeout, a 5xx) is transient and the send is retried with the
// same api_call_id.
type Error struct {
	// Code is the protocol's error code (ERR_INVALID_PAYLOAD,
	// ERR_WRONG_RECIPIENT, ...).
	Code string
	// Message is the protocol's error message; it names rules, never PHI.
	Message string
	// HTTPStatus is the status the refusal came with.
	HTTPStatus int
}

func (e *Error) Error() string {
	return "payer refused the message: " + e.Code + ": " + e.Message
}
