package fhir

import "strings"

// bundleInvariants checks the R4 Bundle constraints that decide whether a
// Bundle means anything at all; they are FHIRPath invariants in the
// definitions (bdl-1 ... bdl-12), which the element walk does not evaluate,
// so they are written out here.
func (val *validator) bundleInvariants(v *jsonValue, path *elemPath) {
	bt := v.member("type")
	if bt == nil || bt.kind != jsonString {
		return
	}
	typ := bt.text
	switch typ {
	case "document", "message", "transaction", "transaction-response", "batch", "batch-response",
		"history", "searchset", "collection":
	default:
		return // the binding check has already reported the type
	}
	if v.member("total") != nil && typ != "searchset" && typ != "history" {
		val.add(IssueInvariant, path.child("total"), "total is only allowed in a searchset or history Bundle (bdl-1)")
	}
	if typ == "document" {
		if v.member("identifier") == nil {
			val.add(IssueInvariant, path.child("identifier"), "a document Bundle must have an identifier (bdl-9)")
		}
		if v.member("timestamp") == nil {
			val.add(IssueInvariant, path.child("timestamp"), "a document Bundle must have a timestamp (bdl-10)")
		}
	}
	entries := v.member("entry")
	if entries == nil || entries.kind != jsonArray {
		if typ == "document" || typ == "message" {
			val.add(IssueInvariant, path.child("entry"), "a %s Bundle must start with its %s (bdl-11, bdl-12)", typ, firstResourceOf[typ])
		}
		return
	}
	needRequest := typ == "batch" || typ == "transaction" || typ == "history"
	needResponse := typ == "batch-response" || typ == "transaction-response" || typ == "history"
	fullURLs := map[string][]string{}
	for i := range entries.items {
		e := &entries.items[i]
		if e.kind != jsonObject {
			continue
		}
		ep := path.child("entry").at(i)
		if e.member("search") != nil && typ != "searchset" {
			val.add(IssueInvariant, ep.child("search"), "entry.search is only allowed in a searchset Bundle (bdl-2)")
		}
		if hasReq := e.member("request") != nil; hasReq != needRequest {
			if needRequest {
				val.add(IssueInvariant, ep.child("request"), "entry.request is required in a %s Bundle (bdl-3)", typ)
			} else {
				val.add(IssueInvariant, ep.child("request"), "entry.request is not allowed in a %s Bundle (bdl-3)", typ)
			}
		}
		if hasResp := e.member("response") != nil; hasResp != needResponse {
			if needResponse {
				val.add(IssueInvariant, ep.child("response"), "entry.response is required in a %s Bundle (bdl-4)", typ)
			} else {
				val.add(IssueInvariant, ep.child("response"), "entry.response is not allowed in a %s Bundle (bdl-4)", typ)
			}
		}
		res := e.member("resource")
		if res == nil && e.member("request") == nil && e.member("response") == nil {
			val.add(IssueInvariant, ep, "an entry needs a resource unless it has a request or response (bdl-5)")
		}
		if i == 0 && (typ == "document" || typ == "message") {
			want := firstResourceOf[typ]
			if rt := resourceTypeOf(res); rt != want {
				val.add(IssueInvariant, ep.child("resource"), "the first entry of a %s Bundle must be a %s (bdl-11, bdl-12)", typ, want)
			}
		}
		if typ == "history" {
			continue
		}
		if fu := e.member("fullUrl"); fu != nil && fu.kind == jsonString && strings.Contains(fu.text, "/_history/") {
			val.add(IssueInvariant, ep.child("fullUrl"), "fullUrl cannot be a version-specific reference (bdl-8)")
		}
		if fu := e.member("fullUrl"); fu != nil && fu.kind == jsonString && fu.text != "" {
			version := ""
			if res != nil && res.kind == jsonObject {
				if meta := res.member("meta"); meta != nil && meta.kind == jsonObject {
					if vid := meta.member("versionId"); vid != nil && vid.kind == jsonString {
						version = vid.text
					}
				}
			}
			for _, prev := range fullURLs[fu.text] {
				if prev == version {
					val.add(IssueInvariant, ep.child("fullUrl"), "the fullUrl appears twice without different meta.versionId (bdl-7)")
					break
				}
			}
			fullURLs[fu.text] = append(fullURLs[fu.text], version)
		}
	}
}

var firstResourceOf = map[string]string{"document": "Composition", "message": "MessageHeader"}

func resourceTypeOf(v *jsonValue) string {
	if v == nil || v.kind != jsonObject {
		return ""
	}
	if rt := v.member("resourceType"); rt != nil && rt.kind == jsonString {
		return rt.text
	}
	return ""
}
