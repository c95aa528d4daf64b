package fhir

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Issue types (the IssueType code system) that validation reports.
const (
	IssueInvalid     = "invalid"      // the body is not JSON at all
	IssueStructure   = "structure"    // unknown element, wrong JSON shape, duplicate key
	IssueRequired    = "required"     // a required element is missing
	IssueValue       = "value"        // a primitive does not match its type
	IssueCodeInvalid = "code-invalid" // a code is outside its required value set
	IssueInvariant   = "invariant"    // a rule across elements (choice, extension) fails
	IssueTooCostly   = "too-costly"   // validation stopped after too many issues
)

// Issue severities.
const (
	SeverityFatal       = "fatal"
	SeverityError       = "error"
	SeverityWarning     = "warning"
	SeverityInformation = "information"
)

// maxStringBytes is R4's limit on a string's size (2.24.0.1: "strings
// SHALL NOT exceed 1MB"); base64Binary is exempt, as attachments are larger.
const maxStringBytes = 1 << 20

// maxIssues stops a validation that has already said enough: a hostile or
// badly broken document must not produce an OperationOutcome larger than
// itself.
const maxIssues = 100

// Issues is the result of a validation: every problem found, each naming the
// element path in its Expression. An empty Issues means the resource is
// valid. Diagnostics name elements, types and value sets but never repeat
// the values a client sent, which may be PHI, so issues can be logged.
type Issues []OutcomeIssue

// HasErrors reports whether any issue is an error or fatal, i.e. whether the
// resource must be rejected.
func (is Issues) HasErrors() bool {
	for _, i := range is {
		if i.Severity == SeverityError || i.Severity == SeverityFatal {
			return true
		}
	}
	return false
}

// Malformed reports whether the body was not a JSON object at all (HTTP 400)
// as opposed to JSON that breaks the R4 rules (HTTP 422).
func (is Issues) Malformed() bool {
	return len(is) > 0 && is[0].Code == IssueInvalid && is[0].Severity == SeverityFatal
}

// Outcome wraps the issues in an OperationOutcome.
func (is Issues) Outcome() *OperationOutcome {
	return &OperationOutcome{ResourceType: "OperationOutcome", Issue: append([]OutcomeIssue(nil), is...)}
}

// Validate checks one FHIR R4 resource in JSON form against the R4
// definitions: the resourceType is known; every element is defined for its
// place (extension, modifierExtension and `_element` primitive companions
// included); primitives match their R4 types; single values and arrays
// follow each element's cardinality; required elements are present; choice
// elements appear at most once; codes are in their required value sets;
// references have a valid format; contained resources and Bundle entries are
// validated recursively. JSON-level rules hold too: no duplicate keys, no
// empty objects, arrays or strings, no nulls outside primitive arrays.
//
// Validate never fails: a body that is not JSON yields one fatal issue (see
// Issues.Malformed).
func Validate(raw []byte) Issues {
	v, err := parseJSON(raw)
	if err != nil {
		return malformed(err)
	}
	val := &validator{d: mustDefinitions()}
	val.resource(&v, nil, false)
	return val.issues
}

// ValidateType is Validate plus a check that the resource is of the given
// type, as a PUT or POST to /fhir/R4/{type} requires.
func ValidateType(raw []byte, resourceType string) Issues {
	v, err := parseJSON(raw)
	if err != nil {
		return malformed(err)
	}
	val := &validator{d: mustDefinitions()}
	if v.kind == jsonObject {
		if rt := v.member("resourceType"); rt != nil && rt.kind == jsonString && rt.text != "" && rt.text != resourceType {
			val.add(IssueInvalid, &elemPath{name: "resourceType", index: -1}, "resourceType %q does not match the expected %q", rt.text, resourceType)
		}
	}
	val.resource(&v, nil, false)
	return val.issues
}

// IsResourceType reports whether name is a concrete R4 resource type.
func IsResourceType(name string) bool {
	t := mustDefinitions().types[name]
	return t != nil && t.resource && !t.abstract
}

type validator struct {
	d      *definitions
	issues Issues
	// conditional counts the transaction or batch Bundles being walked:
	// inside one, a reference may be a conditional search
	// ("Patient?identifier=...") that the server resolves on write.
	conditional int
	// containedIDs are the ids of the current root resource's contained
	// resources, which #fragment references must name.
	containedIDs map[string]bool
	// resourceValue is the resource being walked: %resource to FHIRPath.
	resourceValue *jsonValue
	resourceDef   *node
	stopped       bool
}

func containedIDsOf(v *jsonValue) map[string]bool {
	c := v.member("contained")
	if c == nil || c.kind != jsonArray {
		return nil
	}
	ids := make(map[string]bool, len(c.items))
	for i := range c.items {
		if c.items[i].kind == jsonObject {
			if id := c.items[i].member("id"); id != nil && id.kind == jsonString {
				ids[id.text] = true
			}
		}
	}
	return ids
}

func (val *validator) warn(code string, at *elemPath, format string, args ...any) {
	if val.stopped || len(val.issues) >= maxIssues {
		return
	}
	is := OutcomeIssue{Severity: SeverityWarning, Code: code, Diagnostics: fmt.Sprintf(format, args...)}
	if e := at.String(); e != "" {
		is.Expression = []string{e}
	}
	val.issues = append(val.issues, is)
}

func (val *validator) add(code string, at *elemPath, format string, args ...any) {
	if val.stopped {
		return
	}
	if len(val.issues) >= maxIssues {
		val.issues = append(val.issues, OutcomeIssue{Severity: SeverityError, Code: IssueTooCostly,
			Diagnostics: fmt.Sprintf("validation stopped after %d issues", maxIssues)})
		val.stopped = true
		return
	}
	is := OutcomeIssue{Severity: SeverityError, Code: code, Diagnostics: fmt.Sprintf(format, args...)}
	if e := at.String(); e != "" {
		is.Expression = []string{e}
	}
	val.issues = append(val.issues, is)
}

// resource validates a value that must be a resource; path is where it sits
// ("" at the top, "Bundle.entry[0].resource" inside a Bundle).
func (val *validator) resource(v *jsonValue, path *elemPath, contained bool) {
	if v.kind != jsonObject {
		val.add(IssueStructure, path, "a resource must be a JSON object, not %s", v.kind)
		return
	}
	rtPath := path.child("resourceType")
	rt := v.member("resourceType")
	switch {
	case rt == nil:
		val.add(IssueRequired, rtPath, "resourceType is missing")
		return
	case rt.kind != jsonString || rt.text == "":
		val.add(IssueStructure, rtPath, "resourceType must be a non-empty string")
		return
	}
	td := val.d.types[rt.text]
	if td == nil || !td.resource || td.abstract {
		val.add(IssueValue, rtPath, "unknown resource type %q", rt.text)
		return
	}
	if path == nil {
		path = &elemPath{name: rt.text, index: -1}
	}
	savedResource, savedDef := val.resourceValue, val.resourceDef
	val.resourceValue, val.resourceDef = v, td.root
	defer func() { val.resourceValue, val.resourceDef = savedResource, savedDef }()
	if !contained {
		// A #fragment reference anywhere in this resource, its contained
		// resources included, points into this resource's contained list
		// (ref-1).
		saved := val.containedIDs
		val.containedIDs = containedIDsOf(v)
		defer func() { val.containedIDs = saved }()
	}
	if rt.text == "Bundle" {
		if bt := v.member("type"); bt != nil && bt.kind == jsonString && (bt.text == "transaction" || bt.text == "batch") {
			val.conditional++
			defer func() { val.conditional-- }()
		}
	}
	val.object(td.root, v, path, true)
	val.containedInvariants(v, path)
	if check := resourceInvariants[rt.text]; check != nil {
		check(val, v, path)
	}
	if rt.text == "Bundle" {
		val.bundleInvariants(v, path)
	}
}

// elemPath is an element's FHIRPath-like location ("Patient.name[0].given[1]"),
// kept as a chain of segments on the stack and rendered to a string only
// when an issue needs it: most elements are valid, and building every path
// eagerly was a sixth of the validation time.
type elemPath struct {
	parent *elemPath
	name   string
	index  int // >= 0 for an index segment, -1 for a name segment
}

func (p *elemPath) child(name string) *elemPath { return &elemPath{parent: p, name: name, index: -1} }

func (p *elemPath) at(i int) *elemPath { return &elemPath{parent: p, index: i} }

// String renders the path; a nil path is the empty string.
func (p *elemPath) String() string {
	var segs []*elemPath
	for q := p; q != nil; q = q.parent {
		segs = append(segs, q)
	}
	var b strings.Builder
	for i := len(segs) - 1; i >= 0; i-- {
		q := segs[i]
		switch {
		case q.index >= 0:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(q.index))
			b.WriteByte(']')
		case b.Len() > 0:
			b.WriteByte('.')
			b.WriteString(q.name)
		default:
			b.WriteString(q.name)
		}
	}
	return b.String()
}

// object validates v against the elements of n.
func (val *validator) object(n *node, v *jsonValue, path *elemPath, resourceRoot bool) {
	if len(v.members) == 0 {
		val.add(IssueStructure, path, "empty object: FHIR JSON leaves absent elements out")
		return
	}
	idx := indexMembers(v)
	val.duplicates(v, path)
	// seen collects the fields present (as a value or an _element); the
	// required and choice checks read it instead of searching the object
	// again, so a large object costs linear time.
	var seenBuf [24]*field
	seen := seenBuf[:0]
	for i := range v.members {
		m := &v.members[i]
		key := m.key
		if key == "resourceType" && resourceRoot {
			continue
		}
		if base, ok := strings.CutPrefix(key, "_"); ok {
			f := n.fields[base]
			if f == nil || f.prim == nil {
				val.add(IssueStructure, path.child(safePathKey(key)), "unknown element %q", safePathKey(key))
				continue
			}
			seen = append(seen, f)
			val.companion(f, m, idx.get(base), path.child(base))
			continue
		}
		f := n.fields[key]
		if f == nil {
			val.add(IssueStructure, path.child(safePathKey(key)), "unknown element %q", safePathKey(key))
			continue
		}
		seen = append(seen, f)
		var companion *jsonValue
		if f.prim != nil {
			companion = idx.get("_" + key)
		}
		val.property(f, &m.val, companion, path.child(key))
	}
	for _, f := range n.required {
		if !isSeen(seen, f) {
			if f.choice != nil {
				val.add(IssueRequired, path.child(f.choice.base+"[x]"), "required element %s[x] is missing", f.choice.base)
			} else {
				val.add(IssueRequired, path.child(f.name), "required element %q is missing", f.name)
			}
			continue
		}
		if f.min > 1 {
			if a := idx.get(f.name); a != nil && a.kind == jsonArray && len(a.items) < f.min {
				val.add(IssueRequired, path.child(f.name), "%q needs at least %d values, has %d", f.name, f.min, len(a.items))
			}
		}
	}
	if len(n.choices) > 0 {
		val.choices(seen, path)
	}
	for _, inv := range n.invariants {
		if !inv.check(val.resourceValue, val.resourceDef, v, n) {
			val.add(IssueInvariant, path, "%s (%s)", inv.human, inv.key)
		}
	}
}

// isSeen reports whether f, or for a choice element any of its variants, is
// among the fields present.
func isSeen(seen []*field, f *field) bool {
	for _, s := range seen {
		if s == f || (f.choice != nil && s.choice == f.choice) {
			return true
		}
	}
	return false
}

// choices reports a choice element present under two types.
func (val *validator) choices(seen []*field, path *elemPath) {
	type first struct {
		c        *choice
		name     string
		reported bool
	}
	var firsts []first
next:
	for _, f := range seen {
		if f.choice == nil {
			continue
		}
		for i := range firsts {
			if firsts[i].c != f.choice {
				continue
			}
			if firsts[i].name != f.name && !firsts[i].reported {
				firsts[i].reported = true
				val.add(IssueInvariant, path.child(f.choice.base+"[x]"), "only one of %s[x] may be present, found %s and %s", f.choice.base, firsts[i].name, f.name)
			}
			continue next
		}
		firsts = append(firsts, first{c: f.choice, name: f.name})
	}
}

// memberIndex finds an object's members by key: by scanning when the object
// is small (most FHIR objects have a handful of members) and through a map
// when it is large, so no object costs quadratic time.
type memberIndex struct {
	v *jsonValue
	m map[string]int
}

func indexMembers(v *jsonValue) memberIndex {
	x := memberIndex{v: v}
	if len(v.members) > 16 {
		x.m = make(map[string]int, len(v.members))
		for i := len(v.members) - 1; i >= 0; i-- {
			x.m[v.members[i].key] = i // the first occurrence wins
		}
	}
	return x
}

func (x memberIndex) get(key string) *jsonValue {
	if x.m != nil {
		if i, ok := x.m[key]; ok {
			return &x.v.members[i].val
		}
		return nil
	}
	return x.v.member(key)
}

// duplicates reports keys that appear twice in one object.
func (val *validator) duplicates(v *jsonValue, path *elemPath) {
	duplicateMembers(v.members, func(i int) {
		key := safePathKey(v.members[i].key)
		val.add(IssueStructure, path.child(key), "duplicate key %q", key)
	})
}

// property validates the value of one element: an array when the element
// repeats, a single value otherwise. companion is the `_name` member, if any,
// which may stand in for nulls in a primitive array.
func (val *validator) property(f *field, v *jsonValue, companion *jsonValue, path *elemPath) {
	if f.max != 1 {
		if v.kind != jsonArray {
			val.add(IssueStructure, path, "%q repeats, so it must be a JSON array", f.name)
			return
		}
		if len(v.items) == 0 {
			val.add(IssueStructure, path, "empty array: FHIR JSON leaves absent elements out")
			return
		}
		if f.max > 0 && len(v.items) > f.max {
			val.add(IssueStructure, path, "%q allows at most %d values, has %d", f.name, f.max, len(v.items))
		}
		for i := range v.items {
			item := &v.items[i]
			ip := path.at(i)
			if item.kind == jsonNull {
				// A null is a position holder that lets the value and companion
				// arrays line up; it needs a companion entry at the same
				// position.
				if f.prim == nil || companion == nil || companion.kind != jsonArray || i >= len(companion.items) || companion.items[i].kind == jsonNull {
					val.add(IssueStructure, ip, "null is only allowed in a primitive array whose _%s entry at the same position has content", f.name)
				}
				continue
			}
			val.value(f, item, ip)
		}
		return
	}
	if v.kind == jsonArray {
		val.add(IssueStructure, path, "%q has at most one value, so it must not be a JSON array", f.name)
		return
	}
	if v.kind == jsonNull {
		if f.prim == nil || companion == nil {
			val.add(IssueStructure, path, "null is not a FHIR value: leave the element out")
		}
		return
	}
	val.value(f, v, path)
}

// companion validates a primitive's `_name` member, which carries the
// primitive's id and extensions.
func (val *validator) companion(f *field, m *jsonMember, value *jsonValue, path *elemPath) {
	v := &m.val
	if f.max == 1 {
		if v.kind != jsonObject {
			val.add(IssueStructure, path, "_%s must be a JSON object", f.name)
			return
		}
		val.object(val.d.element, v, path, false)
		return
	}
	if v.kind != jsonArray {
		val.add(IssueStructure, path, "_%s must be a JSON array, as %s repeats", f.name, f.name)
		return
	}
	if len(v.items) == 0 {
		val.add(IssueStructure, path, "empty array: FHIR JSON leaves absent elements out")
		return
	}
	if value != nil && value.kind == jsonArray && len(value.items) != len(v.items) {
		val.add(IssueStructure, path, "_%s has %d entries but %s has %d: they pair by position", f.name, len(v.items), f.name, len(value.items))
	}
	for i := range v.items {
		item := &v.items[i]
		switch item.kind {
		case jsonNull:
			if value == nil || value.kind != jsonArray || i >= len(value.items) {
				val.add(IssueStructure, path.at(i), "null in _%s has no value at the same position", f.name)
			}
		case jsonObject:
			val.object(val.d.element, item, path.at(i), false)
		default:
			val.add(IssueStructure, path.at(i), "_%s entries must be objects or null", f.name)
		}
	}
}

// value validates one (non-array, non-null) value of element f.
func (val *validator) value(f *field, v *jsonValue, path *elemPath) {
	if f.prim != nil {
		if val.primitive(f.prim, v, path) && f.binding != nil && v.kind == jsonString && !f.binding.all[v.text] {
			val.add(IssueCodeInvalid, path, "the code is not in the required value set %s", f.binding.url)
		}
		return
	}
	if v.kind != jsonObject {
		val.add(IssueStructure, path, "%q must be a JSON object, not %s", f.name, v.kind)
		return
	}
	if f.node != nil {
		val.object(f.node, v, path, false)
		return
	}
	if f.typ == "Resource" {
		val.resource(v, path, f.name == "contained")
		return
	}
	td := val.d.types[f.typ]
	val.object(td.root, v, path, false)
	val.datatypeInvariants(f.typ, v, path)
	switch f.typ {
	case "Reference":
		val.reference(v, path, f.targets)
	case "Extension":
		val.extension(v, path)
	case "Coding":
		if f.binding != nil {
			val.coding(f.binding, v, path)
		}
	case "CodeableConcept":
		if f.binding != nil {
			if cs := v.member("coding"); cs != nil && cs.kind == jsonArray {
				for i := range cs.items {
					if cs.items[i].kind == jsonObject {
						val.coding(f.binding, &cs.items[i], path.child("coding").at(i))
					}
				}
			}
		}
	}
}

// coding checks a Coding against a required value set. Only codings from a
// system the value set draws on are judged: a coding from another system may
// be a translation, and a CodeableConcept may carry several.
func (val *validator) coding(vs *valueSet, v *jsonValue, path *elemPath) {
	sys, code := v.member("system"), v.member("code")
	if sys == nil || code == nil || sys.kind != jsonString || code.kind != jsonString {
		return
	}
	if codes, ok := vs.systems[sys.text]; ok && !codes[code.text] {
		val.add(IssueCodeInvalid, path.child("code"), "the code is not in the required value set %s", vs.url)
	}
}

// extension enforces ext-1: an extension has either nested extensions or a
// value, never both and never neither.
func (val *validator) extension(v *jsonValue, path *elemPath) {
	hasExt := v.member("extension") != nil
	hasValue := false
	for i := range v.members {
		k := strings.TrimPrefix(v.members[i].key, "_")
		if strings.HasPrefix(k, "value") && len(k) > 5 {
			hasValue = true
		}
	}
	if hasExt == hasValue {
		val.add(IssueInvariant, path, "an extension must have either a value[x] or nested extensions, not both or neither (ext-1)")
	}
}

var (
	uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	oidRE  = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)
	idRE   = regexp.MustCompile(`^[A-Za-z0-9\-\.]{1,64}$`)
)

// reference checks Reference.reference: a literal reference must be one of
// the forms R4 defines (3.1.2.1): Type/id, Type/id/_history/vid, an absolute
// URL, urn:uuid:, urn:oid: or a #fragment to a contained resource; inside a
// transaction or batch also a conditional reference Type?search.
//
// When the reference names its target's type (Type/id, or an absolute URL
// ending in Type/id), the type must be one the element allows.
func (val *validator) reference(v *jsonValue, path *elemPath, targets map[string]bool) {
	ref := v.member("reference")
	if ref == nil || ref.kind != jsonString || ref.text == "" {
		return
	}
	msg, fatal := val.referenceProblem(ref.text)
	if msg == "" && len(ref.text) > 1 && ref.text[0] == '#' && !val.containedIDs[ref.text[1:]] {
		// "#" alone points at the container and is allowed, as later FHIR
		// versions make explicit.
		val.add(IssueInvariant, path.child("reference"), "the #fragment names no contained resource (ref-1)")
		return
	}
	if msg == "" && targets != nil {
		if typ := referencedType(ref.text); typ != "" && !targets[typ] {
			val.add(IssueValue, path.child("reference"), "a reference to %s is not allowed here; allowed: %s", typ, sortedKeys(targets))
			return
		}
	}
	switch {
	case msg == "":
	case fatal:
		val.add(IssueValue, path.child("reference"), "invalid reference: %s", msg)
	default:
		val.warn(IssueValue, path.child("reference"), "the reference will not resolve on a FHIR server: %s", msg)
	}
}

// referenceProblem says what is wrong with a literal reference. R4 types
// Reference.reference as a string holding a URL, and a relative URL whose
// first segment is no resource type (HCX's "ClaimRequest/...") or whose id
// breaks the id rules is still a URL: it is reported as a warning, since it
// cannot resolve, but not rejected. Forms that are not a URL of the kind
// they claim to be (urn:uuid: without a UUID, "Patient", "a b") are errors.
func (val *validator) referenceProblem(s string) (msg string, fatal bool) {
	if strings.ContainsAny(s, " \t\r\n\f") {
		return "a reference contains no whitespace", true
	}
	msg, fatal = val.referenceForm(s)
	return msg, fatal
}

func (val *validator) referenceForm(s string) (string, bool) {
	switch {
	case strings.HasPrefix(s, "#"):
		if s != "#" && !idRE.MatchString(s[1:]) {
			return "a contained reference is # followed by the contained resource's id", true
		}
		return "", false
	case strings.HasPrefix(s, "urn:uuid:"):
		if !uuidRE.MatchString(s[len("urn:uuid:"):]) {
			return "urn:uuid: must be followed by a UUID", true
		}
		return "", false
	case strings.HasPrefix(s, "urn:oid:"):
		if !oidRE.MatchString(s[len("urn:oid:"):]) {
			return "urn:oid: must be followed by an OID", true
		}
		return "", false
	case strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://"):
		if len(s) <= len("https://") {
			return "an absolute reference must be a URL", true
		}
		return "", false
	}
	if typ, query, ok := strings.Cut(s, "?"); ok {
		if val.conditional == 0 {
			return "a conditional reference is only allowed in a transaction or batch Bundle", true
		}
		if !IsResourceType(typ) || query == "" {
			return "a conditional reference is Type?search with a known resource type", true
		}
		return "", false
	}
	parts := strings.Split(s, "/")
	switch {
	case len(parts) == 2:
	case len(parts) == 4 && parts[2] == "_history":
		if !idRE.MatchString(parts[3]) {
			return "the version after _history is not a valid id", false
		}
	default:
		return "expected Type/id, Type/id/_history/version, an absolute URL, urn:uuid:, urn:oid: or #id", true
	}
	if parts[0] == "" || parts[1] == "" {
		return "expected Type/id: both parts are needed", true
	}
	if !IsResourceType(parts[0]) {
		return fmt.Sprintf("%q is not an R4 resource type", parts[0]), false
	}
	if !idRE.MatchString(parts[1]) {
		return "the id is not a valid FHIR id", false
	}
	return "", false
}

// referencedType returns the resource type a literal reference names, or
// "" when it names none (urn:uuid:, urn:oid:, #contained, conditional, or a
// URL that does not end in a RESTful Type/id).
func referencedType(s string) string {
	if strings.HasPrefix(s, "urn:") || strings.HasPrefix(s, "#") || strings.Contains(s, "?") {
		return ""
	}
	parts := strings.Split(s, "/")
	if n := len(parts); n >= 4 && parts[n-2] == "_history" {
		parts = parts[:n-2]
	}
	if n := len(parts); n >= 2 && IsResourceType(parts[n-2]) {
		return parts[n-2]
	}
	return ""
}

func sortedKeys(m map[string]bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// primitive checks a primitive value's JSON kind and lexical form, and
// reports whether it passed.
func (val *validator) primitive(p *primitive, v *jsonValue, path *elemPath) bool {
	bad := func(format string, args ...any) bool {
		val.add(IssueValue, path, format, args...)
		return false
	}
	switch p.name {
	case "boolean":
		if v.kind != jsonBool {
			return bad("a boolean must be JSON true or false, not %s", v.kind)
		}
		return true
	case "integer", "unsignedInt", "positiveInt":
		if v.kind != jsonNumber {
			return bad("%s must be a JSON number, not %s", p.name, v.kind)
		}
		n, err := strconv.ParseInt(v.text, 10, 32)
		if err != nil || (p.re != nil && !p.re.MatchString(v.text)) {
			return bad("not a 32-bit integer")
		}
		if p.name == "unsignedInt" && n < 0 || p.name == "positiveInt" && n < 1 {
			return bad("out of range for %s", p.name)
		}
		return true
	case "decimal":
		if v.kind != jsonNumber {
			return bad("decimal must be a JSON number, not %s", v.kind)
		}
		if p.re != nil && !p.re.MatchString(v.text) {
			return bad("not a valid decimal")
		}
		return true
	}
	if v.kind != jsonString {
		return bad("%s must be a JSON string, not %s", p.name, v.kind)
	}
	s := v.text
	if s == "" {
		return bad("empty string: FHIR JSON leaves absent elements out")
	}
	if len(s) > maxStringBytes && p.name != "base64Binary" {
		return bad("%s is longer than R4's 1 MB limit for strings", p.name)
	}
	if msg := stringCharProblem(s); msg != "" {
		return bad("%s", msg)
	}
	switch p.name {
	case "string", "markdown":
		// [ \r\n\t\S]+ leaves out one \s character, the form feed; the
		// control-character rule above refuses it with the others.
		return true
	case "uri", "url", "canonical":
		if strings.ContainsAny(s, " \t\n\r\f") {
			return bad("%s must not contain whitespace", p.name)
		}
		// \S* accepts "urn:uuid:" with anything after it; the urn forms
		// FHIR uses for identity must carry a real UUID or OID, or a
		// reference to them can never resolve.
		if rest, ok := strings.CutPrefix(s, "urn:uuid:"); ok && !uuidRE.MatchString(rest) {
			return bad("urn:uuid: must be followed by a UUID")
		}
		if rest, ok := strings.CutPrefix(s, "urn:oid:"); ok && !oidRE.MatchString(rest) {
			return bad("urn:oid: must be followed by an OID")
		}
		return true
	case "base64Binary":
		if !isBase64(s) {
			return bad("not valid base64")
		}
		return true
	case "xhtml":
		if msg := xhtmlProblem(s); msg != "" {
			return bad("%s", msg)
		}
		return true
	}
	if p.re != nil && !p.re.MatchString(s) {
		return bad("not a valid %s", p.name)
	}
	switch p.name {
	case "date", "dateTime", "instant":
		// The regex allows 31 days in every month; the calendar does not.
		if len(s) >= 10 {
			if _, err := time.Parse("2006-01-02", s[:10]); err != nil {
				return bad("not a calendar date")
			}
		}
	}
	return true
}

// isBase64 implements R4's (\s*([0-9a-zA-Z\+/=]){4}\s*)+ without the
// regexp engine, as attachments can be megabytes long.
func isBase64(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			n++
		default:
			return false
		}
	}
	return n > 0 && n%4 == 0
}
