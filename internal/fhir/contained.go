package fhir

// containedInvariants checks the R4 DomainResource rules for contained
// resources (dom-2 to dom-5). A contained resource only exists inside its
// container, so it cannot have a version of its own (dom-4), security
// labels of its own (dom-5), or resources of its own (dom-2); and it should
// be referenced from the container, or it is a resource nobody can find
// (dom-3, reported as a warning: an orphan is useless but harmless).
func (val *validator) containedInvariants(v *jsonValue, path *elemPath) {
	contained := v.member("contained")
	if contained == nil || contained.kind != jsonArray {
		return
	}
	var refs map[string]bool // "#id" strings anywhere in the container
	for i := range contained.items {
		c := &contained.items[i]
		if c.kind != jsonObject {
			continue
		}
		cp := path.child("contained").at(i)
		if c.member("contained") != nil {
			val.add(IssueInvariant, cp.child("contained"), "a contained resource must not contain resources (dom-2)")
		}
		if meta := c.member("meta"); meta != nil && meta.kind == jsonObject {
			if meta.member("versionId") != nil || meta.member("lastUpdated") != nil {
				val.add(IssueInvariant, cp.child("meta"), "a contained resource has no versionId or lastUpdated of its own (dom-4)")
			}
			if meta.member("security") != nil {
				val.add(IssueInvariant, cp.child("meta").child("security"), "a contained resource has no security labels of its own (dom-5)")
			}
		}
		id := c.member("id")
		if id == nil || id.kind != jsonString || id.text == "" {
			continue
		}
		if refs == nil {
			refs = map[string]bool{}
			collectFragments(v, refs)
		}
		if !refs["#"+id.text] && !refs["#"] {
			val.warn(IssueInvariant, cp, "the contained resource is not referenced from its container (dom-3)")
		}
	}
}

// collectFragments gathers every string value that starts with '#': the
// references, canonicals and uris that can point at a contained resource
// (or, as "#", back at the container).
func collectFragments(v *jsonValue, into map[string]bool) {
	switch v.kind {
	case jsonString:
		if len(v.text) > 0 && v.text[0] == '#' {
			into[v.text] = true
		}
	case jsonArray:
		for i := range v.items {
			collectFragments(&v.items[i], into)
		}
	case jsonObject:
		for i := range v.members {
			collectFragments(&v.members[i].val, into)
		}
	}
}
