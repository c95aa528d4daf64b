package sim

import (
	"encoding/json"
	"strings"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/payer/hcx"
)

// requestBundle is a provider's payload as the payer reads it, through
// the hcx package's lenient reader (an HCX v0.7 document, a v0.7.1
// collection, a NPHIES message Bundle or a bare resource): the main
// resource and the others by type. References inside it are resolved by
// the referenced type and id.
type requestBundle struct {
	hcx.Reading
}

func readRequest(payload []byte) (*requestBundle, error) {
	r, err := hcx.ReadBundle(payload)
	if err != nil {
		return nil, domainError("the payload is not a FHIR Bundle the payer can read")
	}
	return &requestBundle{Reading: r}, nil
}

// first is the main resource when it is of typ, else the first of typ.
func (rb *requestBundle) first(typ string) json.RawMessage {
	if rb.MainType == typ {
		return rb.Main
	}
	if l := rb.Entries[typ]; len(l) > 0 {
		return l[0]
	}
	return nil
}

// resolve finds the resource a reference points at: "Type/id", an
// absolute URL ending so, or "urn:uuid:id" (the HCX habit of naming an
// entry by its resource's id), matched by id among the Bundle's resources
// of that type (any type for urn:uuid).
func (rb *requestBundle) resolve(ref, typ string) json.RawMessage {
	if ref == "" {
		return nil
	}
	id := strings.TrimPrefix(ref, "urn:uuid:")
	if parts := strings.Split(id, "/"); len(parts) >= 2 {
		typ, id = parts[len(parts)-2], parts[len(parts)-1]
	}
	for _, raw := range rb.Entries[typ] {
		var head struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(raw, &head) == nil && head.ID == id {
			return raw
		}
	}
	return nil
}

// memberID is the member id of the coverage a reference points at:
// Coverage.subscriberId, else its first identifier; or fallback (an
// insurance's own identifier) when the coverage is not in the Bundle.
func (rb *requestBundle) memberID(coverage fhir.Reference, fallback *fhir.Identifier) string {
	if raw := rb.resolve(coverage.Reference, "Coverage"); raw != nil {
		if c, err := fhir.ParseCoverage(raw); err == nil {
			if c.SubscriberID != "" {
				return c.SubscriberID
			}
			for _, id := range c.Identifier {
				if id.Value != "" {
					return id.Value
				}
			}
		}
	}
	if coverage.Identifier != nil && coverage.Identifier.Value != "" {
		return coverage.Identifier.Value
	}
	if fallback != nil {
		return fallback.Value
	}
	return ""
}

// claim reads the Bundle's Claim (the main resource): its identity
// (Claim.identifier's value, else its id), member and lines. A Claim
// without identity, use or items is refused with a field-naming rule; an
// item without an amount is read as 0.
func (rb *requestBundle) claim() (*claimRequest, error) {
	raw := rb.first("Claim")
	if raw == nil {
		return nil, domainError("the Bundle holds no Claim")
	}
	c, err := fhir.ParseClaim(raw)
	if err != nil {
		return nil, domainError("the Claim cannot be read")
	}
	cr := &claimRequest{Claim: c}
	for _, id := range c.Identifier {
		if id.Value != "" {
			cr.Identifier = id
			break
		}
	}
	if cr.Identifier.Value == "" && c.ID != "" {
		cr.Identifier = fhir.Identifier{Value: c.ID}
	}
	if cr.Identifier.Value == "" {
		return nil, domainError("Claim.identifier: a value (or Claim.id) is required")
	}
	if c.Use != useClaim && c.Use != usePreauth {
		return nil, domainError("Claim.use: claim or preauthorization is expected")
	}
	for _, rel := range c.Related {
		switch {
		case rel.Claim != nil && rel.Claim.Identifier != nil && rel.Claim.Identifier.Value != "":
			cr.Related = rel.Claim.Identifier.Value
		case rel.Reference != nil && rel.Reference.Value != "":
			cr.Related = rel.Reference.Value
		case rel.Claim != nil && rel.Claim.Reference != "":
			cr.Related = rel.Claim.Reference
		}
		if cr.Related != "" {
			break
		}
	}
	var focal *fhir.ClaimInsurance
	for i := range c.Insurance {
		if focal == nil || c.Insurance[i].Focal {
			focal = &c.Insurance[i]
		}
	}
	if focal != nil {
		cr.MemberID = rb.memberID(focal.Coverage, focal.Identifier)
		cr.PreAuthRef = focal.PreAuthRef
	}
	if len(c.Item) == 0 {
		return nil, domainError("Claim.item: at least one item is required")
	}
	for _, it := range c.Item {
		l := line{Sequence: it.Sequence}
		if len(it.ProductOrService.Coding) > 0 {
			l.System, l.Code = it.ProductOrService.Coding[0].System, it.ProductOrService.Coding[0].Code
		}
		if l.Code == "" {
			return nil, domainError("Claim.item.productOrService: a coded product or service is required")
		}
		ok := false
		if it.Net != nil {
			l.Net, ok = amountOf(it.Net.Value)
		}
		if !ok && it.UnitPrice != nil {
			if unit, uok := amountOf(it.UnitPrice.Value); uok {
				qty := 1.0
				if it.Quantity != nil && it.Quantity.Value != "" {
					if q, err := it.Quantity.Value.Float64(); err == nil && q >= 0 {
						qty = q
					}
				}
				l.Net, ok = Amount(float64(unit)*qty+0.5), true
			}
		}
		if !ok {
			l.Net = 0 // nothing claimed for the line: it pays nothing
		}
		cr.Lines = append(cr.Lines, l)
	}
	return cr, nil
}

// eligibility reads the Bundle's CoverageEligibilityRequest and the
// member it asks about.
func (rb *requestBundle) eligibility() (*eligibilityRequest, string, error) {
	raw := rb.first("CoverageEligibilityRequest")
	if raw == nil {
		return nil, "", domainError("the Bundle holds no CoverageEligibilityRequest")
	}
	var req eligibilityRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, "", domainError("the CoverageEligibilityRequest cannot be read")
	}
	member := ""
	if len(req.Insurance) > 0 {
		member = rb.memberID(req.Insurance[0].Coverage, nil)
	}
	return &req, member, nil
}
