package sim

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/fhir"
)

// The code systems of the answers. CARC is X12's claim adjustment reason
// codes, the reasons HCX's claim denials use.
const (
	systemParticipant   = "urn:hcx:participant_code"
	systemAdjudication  = "http://terminology.hl7.org/CodeSystem/adjudication"
	systemCARC          = "https://x12.org/codes/claim-adjustment-reason-codes"
	systemBenefitType   = "http://terminology.hl7.org/CodeSystem/benefit-type"
	systemBenefitCat    = "http://terminology.hl7.org/CodeSystem/ex-benefitcategory"
	systemPaymentType   = "http://terminology.hl7.org/CodeSystem/payment-type"
	systemExPaymentType = "http://terminology.hl7.org/CodeSystem/ex-paymenttype"
	systemCommCategory  = "http://terminology.hl7.org/CodeSystem/communication-category"
	systemClaimType     = "http://terminology.hl7.org/CodeSystem/claim-type"
)

type obj = map[string]any

func coding(system, code, display string) obj {
	c := obj{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return obj{"coding": []obj{c}}
}

func money(a Amount, currency string) obj {
	return obj{"value": json.Number(a.String()), "currency": currency}
}

func participantRef(code, name string) obj {
	r := obj{"identifier": obj{"system": systemParticipant, "value": code}}
	if name != "" {
		r["display"] = name
	}
	return r
}

func fhirTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }
func fhirDate(t time.Time) string { return t.UTC().Format("2006-01-02") }

// answerBundle wraps resources as an HCX v0.7.1 collection Bundle, the
// main resource first.
func answerBundle(now time.Time, resources ...obj) []byte {
	id := uuid.NewString()
	entries := make([]obj, 0, len(resources))
	for _, r := range resources {
		full := "urn:uuid:" + r["id"].(string)
		entries = append(entries, obj{"fullUrl": full, "resource": r})
	}
	b, _ := json.Marshal(obj{
		"resourceType": "Bundle", "id": id, "type": "collection", "timestamp": fhirTime(now),
		"identifier": obj{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:" + id},
		"entry":      entries,
	})
	return b
}

// claimRequest is a claim or pre-authorization read from a request.
type claimRequest struct {
	Claim      *fhir.Claim
	Identifier fhir.Identifier // the first identifier with a value
	Related    string          // the original's identifier value, for an appeal
	MemberID   string
	Lines      []line
	PreAuthRef []string
}

func (c *claimRequest) requestRef() obj {
	return obj{"type": "Claim", "identifier": c.Identifier}
}

// unnamedPatient stands for a patient the request did not reference, so
// that an answer keeps its required patient element.
var unnamedPatient = obj{"display": "the patient the request did not name"}

// patientRef is the Claim's patient reference, as the provider sent it.
func (c *claimRequest) patientRef() any {
	if p := c.Claim.Patient; p.Reference != "" || p.Identifier != nil || p.Display != "" {
		return p
	}
	return unnamedPatient
}

// claimType is the claim's type, required on the ClaimResponse too.
func (c *claimRequest) claimType() any {
	if c.Claim.Type != nil {
		return c.Claim.Type
	}
	return coding(systemClaimType, "institutional", "")
}

// claimResponse answers a claim or pre-authorization with its decision,
// or, with d nil, says it is queued (waiting for information).
func claimResponse(p *PayerRules, c *claimRequest, d *decision, preAuthRef string, now time.Time) obj {
	use := c.Claim.Use
	cr := obj{
		"resourceType": "ClaimResponse", "id": uuid.NewString(), "status": "active",
		"identifier": []obj{{"system": systemParticipant + ":" + p.Code + ":claimresponse", "value": uuid.NewString()}},
		"type":       c.claimType(), "use": use, "patient": c.patientRef(), "created": fhirTime(now),
		"insurer": participantRef(p.Code, p.Name), "request": c.requestRef(),
	}
	if d == nil {
		cr["outcome"] = "queued"
		cr["disposition"] = "Waiting for the information the payer asked for."
		return cr
	}
	cr["outcome"] = "complete"
	cr["disposition"] = disposition(use, d.Outcome)
	if preAuthRef != "" {
		cr["preAuthRef"] = preAuthRef
	}
	var items, errors []obj
	for _, it := range d.Items {
		adj := []obj{{"category": coding(systemAdjudication, "submitted", ""), "amount": money(it.Net, p.Currency)}}
		if !it.Denied {
			adj = append(adj,
				obj{"category": coding(systemAdjudication, "eligible", ""), "amount": money(it.Eligible, p.Currency)},
				obj{"category": coding(systemAdjudication, "copay", ""), "amount": money(it.Copay+it.Coinsurance, p.Currency)})
		}
		benefit := obj{"category": coding(systemAdjudication, "benefit", ""), "amount": money(it.Benefit, p.Currency)}
		if it.Reason != "" {
			benefit["reason"] = coding(systemCARC, it.Reason, it.ReasonDisplay)
		}
		adj = append(adj, benefit)
		items = append(items, obj{"itemSequence": it.Sequence, "adjudication": adj})
		if it.Denied {
			errors = append(errors, obj{"itemSequence": it.Sequence, "code": coding(systemCARC, it.Reason, it.ReasonDisplay)})
		}
	}
	if len(items) > 0 {
		cr["item"] = items
	}
	if len(errors) > 0 {
		cr["error"] = errors
	}
	cr["total"] = []obj{
		{"category": coding(systemAdjudication, "submitted", ""), "amount": money(d.Submitted, p.Currency)},
		{"category": coding(systemAdjudication, "benefit", ""), "amount": money(d.Benefit, p.Currency)},
	}
	if use == useClaim && d.Benefit > 0 {
		cr["payment"] = obj{"type": coding(systemExPaymentType, "complete", ""), "amount": money(d.Benefit, p.Currency)}
	}
	return cr
}

func disposition(use, outcome string) string {
	switch outcome {
	case OutcomeApproved:
		if use == usePreauth {
			return "Pre-authorization approved."
		}
		return "Claim approved."
	case OutcomePartial:
		return "Approved in part: see the item adjudications."
	case OutcomeRefused:
		return "Pre-authorization refused."
	default:
		return "Claim denied: see the errors."
	}
}

// eligibilityRequest is what the payer reads of a
// CoverageEligibilityRequest.
type eligibilityRequest struct {
	ID         string            `json:"id"`
	Identifier []fhir.Identifier `json:"identifier"`
	Purpose    []string          `json:"purpose"`
	Patient    json.RawMessage   `json:"patient"`
	Insurance  []struct {
		Coverage fhir.Reference `json:"coverage"`
	} `json:"insurance"`
	Item []struct {
		ProductOrService *fhir.CodeableConcept `json:"productOrService"`
	} `json:"item"`
}

// eligibilityResponse answers an eligibility check with the member's plan
// (inforce false when the payer does not know the member).
func eligibilityResponse(p *PayerRules, req *eligibilityRequest, pl *Plan, used Amount, now time.Time) obj {
	purpose := req.Purpose
	if len(purpose) == 0 {
		purpose = []string{"benefits"}
	}
	request := obj{"reference": "CoverageEligibilityRequest/" + req.ID}
	if req.ID == "" {
		request = obj{"type": "CoverageEligibilityRequest", "display": "the request of this exchange"}
	}
	if len(req.Identifier) > 0 && req.Identifier[0].Value != "" {
		request = obj{"type": "CoverageEligibilityRequest", "identifier": req.Identifier[0]}
	}
	insurance := obj{"inforce": pl != nil}
	if len(req.Insurance) > 0 && req.Insurance[0].Coverage != (fhir.Reference{}) {
		insurance["coverage"] = req.Insurance[0].Coverage
	}
	if pl != nil {
		benefits := []obj{
			{"type": coding(systemBenefitType, "copay", ""), "allowedMoney": money(pl.Copay, p.Currency)},
			{"type": coding(systemBenefitType, "copay-percent", ""), "allowedUnsignedInt": int(pl.CoinsurancePercent)},
		}
		if pl.AnnualLimit > 0 {
			benefits = append(benefits, obj{"type": coding(systemBenefitType, "benefit", ""),
				"allowedMoney": money(pl.AnnualLimit, p.Currency), "usedMoney": money(used, p.Currency)})
		}
		items := []obj{{"category": coding(systemBenefitCat, "1", "Medical Care"), "name": pl.Name,
			"network": coding("http://terminology.hl7.org/CodeSystem/benefit-network", "in", ""), "benefit": benefits}}
		for _, it := range req.Item {
			if it.ProductOrService == nil || len(it.ProductOrService.Coding) == 0 {
				continue
			}
			code := it.ProductOrService.Coding[0].Code
			items = append(items, obj{"productOrService": it.ProductOrService,
				"excluded": !matchCode(pl.Covered, code), "authorizationRequired": p.needsPreauth(pl, code)})
		}
		insurance["item"] = items
	}
	out := obj{
		"resourceType": "CoverageEligibilityResponse", "id": uuid.NewString(), "status": "active",
		"purpose": purpose, "created": fhirTime(now), "request": request, "outcome": "complete",
		"insurer": participantRef(p.Code, p.Name), "patient": unnamedPatient,
	}
	if len(req.Patient) > 0 && string(req.Patient) != "{}" && string(req.Patient) != "null" {
		out["patient"] = req.Patient
	}
	// insurance.coverage is required: without the request's coverage the
	// answer says what it knows in the disposition alone.
	if _, ok := insurance["coverage"]; ok {
		out["insurance"] = []obj{insurance}
	}
	if pl == nil {
		out["disposition"] = "The payer does not know this member."
	}
	return out
}

// communicationRequest asks the provider for more information about a
// claim or pre-authorization.
func communicationRequest(p *PayerRules, c *claimRequest, provider, question string, now time.Time) obj {
	return obj{
		"resourceType": "CommunicationRequest", "id": uuid.NewString(), "status": "active",
		"category": []obj{coding(systemCommCategory, "instruction", "")},
		"subject":  c.patientRef(), "about": []obj{c.requestRef()},
		"payload": []obj{{"contentString": question}}, "authoredOn": fhirTime(now),
		"requester": participantRef(p.Code, p.Name), "recipient": []obj{participantRef(provider, "")},
	}
}

// payment is a PaymentReconciliation paying a claim's benefit, and the
// PaymentNotice announcing it; detail[].request names the Claim by the
// identifier it carried.
func payment(p *PayerRules, claimIdent fhir.Identifier, provider string, benefit Amount, now time.Time) (recon, notice obj) {
	reconID := uuid.NewString()
	payID := "PAY-" + strconv.FormatInt(now.UnixMilli(), 36) + "-" + reconID[:8]
	recon = obj{
		"resourceType": "PaymentReconciliation", "id": reconID, "status": "active",
		"identifier": []obj{{"system": systemParticipant + ":" + p.Code + ":payment", "value": payID}},
		"created":    fhirTime(now), "paymentIssuer": participantRef(p.Code, p.Name),
		"requestor": participantRef(provider, ""), "outcome": "complete",
		"disposition": fmt.Sprintf("Payment of claim benefit by %s.", p.Name),
		"paymentDate": fhirDate(now), "paymentAmount": money(benefit, p.Currency),
		"paymentIdentifier": obj{"system": systemParticipant + ":" + p.Code + ":payment", "value": payID},
		"detail": []obj{{
			"type":    coding(systemPaymentType, "payment", ""),
			"request": obj{"type": "Claim", "identifier": claimIdent},
			"payee":   participantRef(provider, ""), "date": fhirDate(now), "amount": money(benefit, p.Currency),
		}},
	}
	notice = obj{
		"resourceType": "PaymentNotice", "id": uuid.NewString(), "status": "active",
		"request": obj{"type": "Claim", "identifier": claimIdent}, "created": fhirTime(now),
		"provider": participantRef(p.Code, p.Name),
		"payment":  obj{"reference": "urn:uuid:" + reconID}, "paymentDate": fhirDate(now),
		"payee": participantRef(provider, ""), "recipient": participantRef(provider, ""),
		"amount": money(benefit, p.Currency),
	}
	return recon, notice
}
