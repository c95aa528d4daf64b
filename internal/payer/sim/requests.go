package sim

import (
	"encoding/json"
	"strings"

	"github.com/careflow/careflow/internal/fhir"
)

// requestBundle is a provider's Bundle as the payer reads it: resources by
// type, and by the references that reach them (fullUrl, Type/id).
type requestBundle struct {
	byType map[string][]entry
	byRef  map[string]json.RawMessage
}

// entry is one resource of the Bundle and the fullUrl it came with.
type entry struct {
	raw     json.RawMessage
	fullURL string
}

// indexBundle indexes the resources of a parsed Bundle (document or
// collection: HCX v0.7 and v0.7.1 both).
func indexBundle(b *fhir.Bundle) *requestBundle {
	rb := &requestBundle{byType: map[string][]entry{}, byRef: map[string]json.RawMessage{}}
	for _, e := range b.Entry {
		if len(e.Resource) == 0 {
			continue
		}
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(e.Resource, &head) != nil || head.ResourceType == "" {
			continue
		}
		rb.byType[head.ResourceType] = append(rb.byType[head.ResourceType], entry{raw: e.Resource, fullURL: e.FullURL})
		if e.FullURL != "" {
			rb.byRef[e.FullURL] = e.Resource
		}
		if head.ID != "" {
			rb.byRef[head.ResourceType+"/"+head.ID] = e.Resource
		}
	}
	return rb
}

// first is the Bundle's first resource of a type, and its fullUrl.
func (rb *requestBundle) first(typ string) (json.RawMessage, string) {
	if l := rb.byType[typ]; len(l) > 0 {
		return l[0].raw, l[0].fullURL
	}
	return nil, ""
}

// resolve finds a referenced resource in the Bundle: by fullUrl, by
// Type/id, or by the last two segments of an absolute URL.
func (rb *requestBundle) resolve(ref string) json.RawMessage {
	if ref == "" {
		return nil
	}
	if r, ok := rb.byRef[ref]; ok {
		return r
	}
	if parts := strings.Split(ref, "/"); len(parts) >= 2 {
		return rb.byRef[parts[len(parts)-2]+"/"+parts[len(parts)-1]]
	}
	return nil
}

// memberID is the member id of the coverage a reference points at:
// Coverage.subscriberId, else its first identifier; or fallback (an
// insurance's own identifier) when the coverage is not in the Bundle.
func (rb *requestBundle) memberID(coverage fhir.Reference, fallback *fhir.Identifier) string {
	if raw := rb.resolve(coverage.Reference); raw != nil {
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

// claim reads the Bundle's Claim (the first one): its identity, member
// and lines. A Claim without an identifier value, a use or items is
// refused with a field-naming rule.
func (rb *requestBundle) claim() (*claimRequest, error) {
	raw, _ := rb.first("Claim")
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
	if cr.Identifier.Value == "" {
		return nil, domainError("Claim.identifier: a value is required")
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
		var ok bool
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
			return nil, domainError("Claim.item.net: an amount (net, or unitPrice) is required")
		}
		cr.Lines = append(cr.Lines, l)
	}
	return cr, nil
}

// eligibility reads the Bundle's CoverageEligibilityRequest and the
// member it asks about.
func (rb *requestBundle) eligibility() (*eligibilityRequest, string, error) {
	raw, fullURL := rb.first("CoverageEligibilityRequest")
	if raw == nil {
		return nil, "", domainError("the Bundle holds no CoverageEligibilityRequest")
	}
	var req eligibilityRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, "", domainError("the CoverageEligibilityRequest cannot be read")
	}
	req.fullURL = fullURL
	member := ""
	if len(req.Insurance) > 0 {
		member = rb.memberID(req.Insurance[0].Coverage, nil)
	}
	return &req, member, nil
}
