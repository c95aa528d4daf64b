package fhir

import (
	"slices"
	"strings"
	"time"
)

// resourceInvariants holds hand-written checks of the error-severity
// FHIRPath invariants that R4 defines on the resources careflow works with
// (the element walk does not evaluate FHIRPath). Each function is keyed by
// resource type and reports with the invariant's key, so a client can look
// it up in the specification.
//
// Consent's ppc-2..ppc-5 compare scope codings with the stand-in system
// 'something' in R4 4.0.1, so they can never fail and are left out.
//
// A few resources the server handles as infrastructure rather than as
// clinical or billing records (Parameters for operations, Composition for
// HCX documents, SearchParameter, AllergyIntolerance, MolecularSequence) are
// covered too; the invariants of the remaining resource types are not
// evaluated.
var resourceInvariants = map[string]func(val *validator, v *jsonValue, path *elemPath){
	"AllergyIntolerance": func(val *validator, v *jsonValue, path *elemPath) {
		erroneous := hasCoding(v.member("verificationStatus"), "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "entered-in-error")
		switch {
		case !erroneous && !has(v, "clinicalStatus"):
			val.add(IssueInvariant, path.child("clinicalStatus"), "clinicalStatus is required unless the record was entered in error (ait-1)")
		case erroneous && has(v, "clinicalStatus"):
			val.add(IssueInvariant, path.child("clinicalStatus"), "a record entered in error has no clinicalStatus (ait-2)")
		}
	},
	"Composition": func(val *validator, v *jsonValue, path *elemPath) {
		var sections func(*jsonValue, *elemPath)
		sections = func(parent *jsonValue, pp *elemPath) {
			eachObject(parent, "section", pp, func(e *jsonValue, p *elemPath) {
				if !has(e, "text") && !has(e, "entry") && !has(e, "section") {
					val.add(IssueInvariant, p, "a section has text, entries or sub-sections (cmp-1)")
				}
				if has(e, "emptyReason") && has(e, "entry") {
					val.add(IssueInvariant, p.child("emptyReason"), "only an empty section has an emptyReason (cmp-2)")
				}
				sections(e, p)
			})
		}
		sections(v, path)
	},
	"MolecularSequence": func(val *validator, v *jsonValue, path *elemPath) {
		if rs := v.member("referenceSeq"); rs != nil && rs.kind == jsonObject && has(rs, "chromosome") != has(rs, "genomeBuild") {
			val.add(IssueInvariant, path.child("referenceSeq"), "chromosome and genomeBuild come together (msq-5)")
		}
	},
	"Parameters": func(val *validator, v *jsonValue, path *elemPath) {
		var params func(*jsonValue, string, *elemPath)
		params = func(parent *jsonValue, key string, pp *elemPath) {
			eachObject(parent, key, pp, func(e *jsonValue, p *elemPath) {
				var kinds []string // distinct, so valueX and _valueX count once
				for _, m := range e.members {
					k := strings.TrimPrefix(m.key, "_")
					if (k == "resource" || k == "part" || (strings.HasPrefix(k, "value") && len(k) > len("value"))) && !slices.Contains(kinds, k) {
						kinds = append(kinds, k)
					}
				}
				if len(kinds) != 1 {
					val.add(IssueInvariant, p, "a parameter has exactly one of value[x], resource and part (inv-1)")
				}
				params(e, "part", p)
			})
		}
		params(v, "parameter", path)
	},
	"SearchParameter": func(val *validator, v *jsonValue, path *elemPath) {
		if has(v, "xpath") && !has(v, "xpathUsage") {
			val.add(IssueInvariant, path.child("xpathUsage"), "an xpath needs an xpathUsage (spd-1)")
		}
		if t := v.member("type"); has(v, "chain") && (t == nil || t.text != "reference") {
			val.add(IssueInvariant, path.child("chain"), "only reference parameters have chain names (spd-2)")
		}
	},
	"AuditEvent": func(val *validator, v *jsonValue, path *elemPath) {
		eachObject(v, "entity", path, func(e *jsonValue, p *elemPath) {
			if has(e, "name") && has(e, "query") {
				val.add(IssueInvariant, p, "an entity has a name or a query, not both (sev-1)")
			}
		})
	},
	"CareTeam": func(val *validator, v *jsonValue, path *elemPath) {
		eachObject(v, "participant", path, func(e *jsonValue, p *elemPath) {
			if !has(e, "onBehalfOf") {
				return
			}
			if m := e.member("member"); m != nil && m.kind == jsonObject {
				if ref := m.member("reference"); ref != nil && ref.kind == jsonString {
					if typ := referencedType(ref.text); typ != "" && typ != "Practitioner" {
						val.add(IssueInvariant, p, "onBehalfOf is only for a Practitioner member (ctm-1)")
					}
				}
			}
		})
	},
	"Condition": func(val *validator, v *jsonValue, path *elemPath) {
		hasAbatement := false
		for _, m := range v.members {
			if len(m.key) > len("abatement") && m.key[:len("abatement")] == "abatement" {
				hasAbatement = true
			}
		}
		const clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
		if hasAbatement && !hasCoding(v.member("clinicalStatus"), clinical, "resolved", "remission", "inactive") {
			val.add(IssueInvariant, path.child("clinicalStatus"), "an abated condition has clinicalStatus resolved, remission or inactive (con-4)")
		}
		if hasCoding(v.member("verificationStatus"), "http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error") && has(v, "clinicalStatus") {
			val.add(IssueInvariant, path.child("clinicalStatus"), "a condition entered in error has no clinicalStatus (con-5)")
		}
		eachObject(v, "stage", path, func(e *jsonValue, p *elemPath) {
			if !has(e, "summary") && !has(e, "assessment") {
				val.add(IssueInvariant, p, "a stage has a summary or an assessment (con-1)")
			}
		})
		eachObject(v, "evidence", path, func(e *jsonValue, p *elemPath) {
			if !has(e, "code") && !has(e, "detail") {
				val.add(IssueInvariant, p, "evidence has a code or a detail (con-2)")
			}
		})
	},
	"Consent": func(val *validator, v *jsonValue, path *elemPath) {
		if !has(v, "policy") && !has(v, "policyRule") {
			val.add(IssueInvariant, path, "a consent names a policy or a policyRule (ppc-1)")
		}
	},
	"CoverageEligibilityResponse": func(val *validator, v *jsonValue, path *elemPath) {
		eachObject(v, "insurance", path, func(ins *jsonValue, ip *elemPath) {
			eachObject(ins, "item", ip, func(e *jsonValue, p *elemPath) {
				if has(e, "category") == has(e, "productOrService") {
					val.add(IssueInvariant, p, "an item has either a category or a productOrService (ces-1)")
				}
			})
		})
	},
	"InsurancePlan": func(val *validator, v *jsonValue, path *elemPath) {
		if !has(v, "identifier") && !has(v, "name") {
			val.add(IssueInvariant, path, "an insurance plan has an identifier or a name (ipn-1)")
		}
	},
	"Observation": func(val *validator, v *jsonValue, path *elemPath) {
		hasValue := false
		for _, m := range v.members {
			if len(m.key) > len("value") && m.key[:len("value")] == "value" {
				hasValue = true
			}
		}
		if hasValue && has(v, "dataAbsentReason") {
			val.add(IssueInvariant, path.child("dataAbsentReason"), "dataAbsentReason is only for an observation without a value (obs-6)")
		}
		if hasValue {
			var codes []jsonValue
			if c := v.member("code"); c != nil && c.kind == jsonObject {
				if cs := c.member("coding"); cs != nil && cs.kind == jsonArray {
					codes = cs.items
				}
			}
			eachObject(v, "component", path, func(e *jsonValue, p *elemPath) {
				c := e.member("code")
				if c == nil || c.kind != jsonObject {
					return
				}
				cs := c.member("coding")
				if cs == nil || cs.kind != jsonArray {
					return
				}
				for i := range cs.items {
					for j := range codes {
						if equalValues(&cs.items[i], &codes[j]) {
							val.add(IssueInvariant, p.child("code"), "a component repeats the observation's own code while the observation has a value (obs-7)")
							return
						}
					}
				}
			})
		}
		eachObject(v, "referenceRange", path, func(e *jsonValue, p *elemPath) {
			if !has(e, "low") && !has(e, "high") && !has(e, "text") {
				val.add(IssueInvariant, p, "a reference range has a low, a high or a text (obs-3)")
			}
		})
	},
	"Organization": func(val *validator, v *jsonValue, path *elemPath) {
		if !has(v, "identifier") && !has(v, "name") {
			val.add(IssueInvariant, path, "an organization has an identifier or a name (org-1)")
		}
		eachObject(v, "telecom", path, func(e *jsonValue, p *elemPath) {
			if u := e.member("use"); u != nil && u.kind == jsonString && u.text == "home" {
				val.add(IssueInvariant, p.child("use"), "an organization has no home telecom (org-3)")
			}
		})
		eachObject(v, "address", path, func(e *jsonValue, p *elemPath) {
			if u := e.member("use"); u != nil && u.kind == jsonString && u.text == "home" {
				val.add(IssueInvariant, p.child("use"), "an organization has no home address (org-2)")
			}
		})
	},
	"Patient": func(val *validator, v *jsonValue, path *elemPath) {
		eachObject(v, "contact", path, func(e *jsonValue, p *elemPath) {
			if !has(e, "name") && !has(e, "telecom") && !has(e, "address") && !has(e, "organization") {
				val.add(IssueInvariant, p, "a contact has a name, telecom, address or organization (pat-1)")
			}
		})
	},
	"Task": func(val *validator, v *jsonValue, path *elemPath) {
		lm, ao := v.member("lastModified"), v.member("authoredOn")
		if lm == nil || ao == nil || lm.kind != jsonString || ao.kind != jsonString {
			return
		}
		// FHIRPath compares dateTimes of different precision as unknown,
		// which passes; only two full timestamps can break the rule.
		l, err1 := time.Parse(time.RFC3339Nano, lm.text)
		a, err2 := time.Parse(time.RFC3339Nano, ao.text)
		if err1 == nil && err2 == nil && l.Before(a) {
			val.add(IssueInvariant, path.child("lastModified"), "lastModified is not before authoredOn (inv-1)")
		}
	},
}

func has(v *jsonValue, key string) bool {
	return v.member(key) != nil || v.member("_"+key) != nil
}

// eachObject calls fn for every object in the array member key of v, with
// its path.
func eachObject(v *jsonValue, key string, path *elemPath, fn func(*jsonValue, *elemPath)) {
	arr := v.member(key)
	if arr == nil || arr.kind != jsonArray {
		return
	}
	for i := range arr.items {
		if arr.items[i].kind == jsonObject {
			fn(&arr.items[i], path.child(key).at(i))
		}
	}
}

// hasCoding reports whether a CodeableConcept has a coding with system and
// one of codes.
func hasCoding(cc *jsonValue, system string, codes ...string) bool {
	if cc == nil || cc.kind != jsonObject {
		return false
	}
	cs := cc.member("coding")
	if cs == nil || cs.kind != jsonArray {
		return false
	}
	for i := range cs.items {
		c := &cs.items[i]
		if c.kind != jsonObject {
			continue
		}
		sys, code := c.member("system"), c.member("code")
		if sys == nil || code == nil || sys.text != system {
			continue
		}
		for _, want := range codes {
			if code.text == want {
				return true
			}
		}
	}
	return false
}
