package fhir

import (
	"errors"
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// This file evaluates the subset of FHIRPath that R4's resource invariants
// use, so constraints such as que-1 or sdf-3 are checked without a full
// FHIRPath engine. An expression that needs anything outside the subset
// (resolve(), type tests on elements of unknown type, ~, date arithmetic)
// is not evaluated at all: the validator would rather miss a rule than
// reject a valid resource on a guess.

var errUnsupported = errors.New("fhirpath: outside the supported subset")

// fpItem is one value in a FHIRPath collection: an element of the resource
// (v) or a literal. typ is the FHIR type when navigation revealed it (a
// choice element such as valueBoolean); noValue marks a primitive present
// only as its _element companion.
type fpItem struct {
	v       *jsonValue
	typ     string
	noValue bool
	// def is the definition node of v when v is an object whose type is
	// known (the resource, an element reached through the definitions);
	// nil otherwise. It decides which members are choice variants: only
	// an element the definitions declare as name[x] expands to its typed
	// variants, so responseCode is not a variant of response.
	def *node
}

type fpCollection []fpItem

type fpNode interface {
	eval(ctx *fpContext, focus fpCollection) (fpCollection, error)
}

type fpContext struct {
	resource    *jsonValue
	resourceDef *node
	context     fpCollection
}

// ---- evaluation ----

type fpLiteral struct{ items fpCollection }

func (n *fpLiteral) eval(*fpContext, fpCollection) (fpCollection, error) { return n.items, nil }

type fpVar struct{ name string }

func (n *fpVar) eval(ctx *fpContext, focus fpCollection) (fpCollection, error) {
	switch n.name {
	case "$this":
		return focus, nil
	case "%resource", "%rootResource":
		return fpCollection{{v: ctx.resource, def: ctx.resourceDef}}, nil
	case "%context":
		return ctx.context, nil
	case "%ucum":
		return fpCollection{{v: &jsonValue{kind: jsonString, text: "http://unitsofmeasure.org"}}}, nil
	}
	return nil, errUnsupported
}

type fpMember struct {
	recv fpNode
	name string
}

func (n *fpMember) eval(ctx *fpContext, focus fpCollection) (fpCollection, error) {
	in := focus
	if n.recv != nil {
		var err error
		if in, err = n.recv.eval(ctx, focus); err != nil {
			return nil, err
		}
	}
	var out fpCollection
	for _, it := range in {
		v := it.v
		if v == nil || v.kind != jsonObject {
			continue
		}
		// A leading type name ("Appointment.status") names the resource
		// itself.
		if n.recv == nil {
			if rt := v.member("resourceType"); rt != nil && rt.text == n.name {
				out = append(out, it)
				continue
			}
		}
		out = appendMember(out, it, n.name)
	}
	return out, nil
}

// appendMember adds the values of element name in object it: the element
// itself (arrays flattened), its _element companion when it has no value,
// or the variants of a choice element (value -> valueString, ...). Which
// elements are choices comes from the definitions when the object's node
// is known; for an object of unknown type, a member is a variant of name
// only when some R4 definition declares name[x] with that variant.
func appendMember(out fpCollection, it fpItem, name string) fpCollection {
	v := it.v
	add := func(val *jsonValue, companion *jsonValue, typ string, f *field) {
		childDef := func(c *jsonValue) *node { return fieldNode(f, c) }
		if val != nil && val.kind == jsonArray {
			for i := range val.items {
				if val.items[i].kind != jsonNull {
					out = append(out, fpItem{v: &val.items[i], typ: typ, def: childDef(&val.items[i])})
				} else if companion != nil && companion.kind == jsonArray && i < len(companion.items) {
					out = append(out, fpItem{v: &companion.items[i], typ: typ, noValue: true})
				}
			}
			return
		}
		if val != nil && val.kind != jsonNull {
			out = append(out, fpItem{v: val, typ: typ, def: childDef(val)})
			return
		}
		if companion != nil && companion.kind == jsonObject {
			out = append(out, fpItem{v: companion, typ: typ, noValue: true})
		}
	}
	var f *field
	if it.def != nil {
		f = it.def.fields[name]
	}
	if val, comp := v.member(name), v.member("_"+name); val != nil || comp != nil {
		if f != nil && f.choice != nil {
			// A concrete variant named directly (valueString): its type
			// is the variant's.
			add(val, comp, name[len(f.choice.base):], f)
		} else {
			add(val, comp, "", f)
		}
		return out
	}
	if f != nil {
		// A plain element of the definitions that is absent: no value,
		// whatever members share its name as a prefix.
		return out
	}
	for _, variant := range choiceVariants(it.def, name) {
		k := variant.name
		typ := k[len(name):]
		if val := v.member(k); val != nil {
			add(val, v.member("_"+k), typ, variant)
		} else if comp := v.member("_" + k); comp != nil {
			add(nil, comp, typ, variant)
		}
	}
	return out
}

// choiceVariants lists the fields of choice element name[x] of def, or,
// when def is unknown, those of every definition node that declares
// name[x] (their union, by variant name).
func choiceVariants(def *node, name string) []*field {
	if def != nil {
		for _, c := range def.choices {
			if c.base == name {
				return c.variants
			}
		}
		return nil
	}
	return mustDefinitions().choicesNamed(name)
}

// fieldNode is the definition node of value c of field f: an inline
// element's own node, a complex type's root, or for a resource-typed
// element (contained, Bundle.entry.resource) the root of the resource type
// c names. Primitives and unknown fields have none.
func fieldNode(f *field, c *jsonValue) *node {
	if f == nil || c == nil || c.kind != jsonObject {
		return nil
	}
	if f.node != nil {
		return f.node
	}
	d := mustDefinitions()
	if f.typ == "Resource" {
		if rt := c.member("resourceType"); rt != nil && rt.kind == jsonString {
			if td := d.types[rt.text]; td != nil && td.resource {
				return td.root
			}
		}
		return nil
	}
	if td := d.types[f.typ]; td != nil {
		return td.root
	}
	return nil
}

type fpIndex struct{ expr, index fpNode }

func (n *fpIndex) eval(ctx *fpContext, focus fpCollection) (fpCollection, error) {
	c, err := n.expr.eval(ctx, focus)
	if err != nil {
		return nil, err
	}
	idx, err := n.index.eval(ctx, focus)
	if err != nil {
		return nil, err
	}
	i, ok := fpInt(idx)
	if !ok {
		return nil, errUnsupported
	}
	if i < 0 || i >= len(c) {
		return nil, nil
	}
	return c[i : i+1], nil
}

type fpTypeOp struct {
	op   string
	expr fpNode
	typ  string
}

func (n *fpTypeOp) eval(ctx *fpContext, focus fpCollection) (fpCollection, error) {
	c, err := n.expr.eval(ctx, focus)
	if err != nil {
		return nil, err
	}
	if len(c) == 0 {
		return nil, nil
	}
	if len(c) > 1 || c[0].typ == "" {
		return nil, errUnsupported // the element's type is not known here
	}
	match := strings.EqualFold(c[0].typ, n.typ)
	if n.op == "as" {
		if match {
			return c, nil
		}
		return nil, nil
	}
	return fpBool(match), nil
}

type fpCall struct {
	recv fpNode
	name string
	args []fpNode
}

var fpFunctions = map[string]bool{
	"exists": true, "empty": true, "count": true, "not": true, "all": true, "allTrue": true, "allFalse": true,
	"where": true, "select": true, "isDistinct": true, "first": true, "last": true, "tail": true,
	"hasValue": true, "trace": true, "contains": true, "startsWith": true, "endsWith": true, "matches": true,
	"length": true, "children": true, "descendants": true, "combine": true, "intersect": true,
	"toInteger": true, "toString": true, "iif": true, "ofType": true, "distinct": true,
}

func (n *fpCall) eval(ctx *fpContext, focus fpCollection) (fpCollection, error) {
	in := focus
	if n.recv != nil {
		var err error
		if in, err = n.recv.eval(ctx, focus); err != nil {
			return nil, err
		}
	}
	arg := func(i int, f fpCollection) (fpCollection, error) {
		if i >= len(n.args) {
			return nil, errUnsupported
		}
		return n.args[i].eval(ctx, f)
	}
	// perItem evaluates argument i once per input item, with the item as
	// $this.
	perItem := func(fn func(it fpItem, r fpCollection) (bool, error)) error {
		for _, it := range in {
			r, err := arg(0, fpCollection{it})
			if err != nil {
				return err
			}
			if stop, err := fn(it, r); err != nil || stop {
				return err
			}
		}
		return nil
	}
	switch n.name {
	case "exists":
		if len(n.args) == 0 {
			return fpBool(len(in) > 0), nil
		}
		found := false
		err := perItem(func(_ fpItem, r fpCollection) (bool, error) {
			b, ok, err := fpTruth(r)
			found = ok && b
			return found, err
		})
		return fpBool(found), err
	case "empty":
		return fpBool(len(in) == 0), nil
	case "count":
		return fpCollection{{v: &jsonValue{kind: jsonNumber, text: strconv.Itoa(len(in))}}}, nil
	case "not":
		b, ok, err := fpTruth(in)
		if err != nil || !ok {
			return nil, err
		}
		return fpBool(!b), nil
	case "all":
		all := true
		err := perItem(func(_ fpItem, r fpCollection) (bool, error) {
			b, ok, err := fpTruth(r)
			if ok && !b {
				all = false
				return true, err
			}
			return false, err
		})
		return fpBool(all), err
	case "allTrue", "allFalse":
		want := n.name == "allTrue"
		for _, it := range in {
			if it.v == nil || it.v.kind != jsonBool || it.v.b != want {
				return fpBool(false), nil
			}
		}
		return fpBool(true), nil
	case "where":
		var out fpCollection
		err := perItem(func(it fpItem, r fpCollection) (bool, error) {
			if b, ok, err := fpTruth(r); ok && b {
				out = append(out, it)
			} else if err != nil {
				return true, err
			}
			return false, nil
		})
		return out, err
	case "select":
		var out fpCollection
		err := perItem(func(_ fpItem, r fpCollection) (bool, error) {
			out = append(out, r...)
			return false, nil
		})
		return out, err
	case "isDistinct":
		return fpBool(len(fpDistinct(in)) == len(in)), nil
	case "distinct":
		return fpDistinct(in), nil
	case "first":
		if len(in) == 0 {
			return nil, nil
		}
		return in[:1], nil
	case "last":
		if len(in) == 0 {
			return nil, nil
		}
		return in[len(in)-1:], nil
	case "tail":
		if len(in) <= 1 {
			return nil, nil
		}
		return in[1:], nil
	case "hasValue":
		return fpBool(len(in) == 1 && !in[0].noValue && in[0].v != nil && in[0].v.kind != jsonObject && in[0].v.kind != jsonArray), nil
	case "trace":
		return in, nil
	case "children", "descendants":
		var out fpCollection
		var walk func(it fpItem)
		walk = func(it fpItem) {
			v := it.v
			if v.kind != jsonObject {
				return
			}
			for i := range v.members {
				if strings.HasPrefix(v.members[i].key, "_") || v.members[i].key == "resourceType" {
					continue
				}
				before := len(out)
				out = appendMember(out, it, v.members[i].key)
				if n.name == "descendants" {
					for _, c := range out[before:] {
						walk(c)
					}
				}
			}
		}
		for _, it := range in {
			if it.v != nil {
				walk(it)
			}
		}
		return out, nil
	case "combine":
		other, err := arg(0, focus)
		if err != nil {
			return nil, err
		}
		return append(append(fpCollection(nil), in...), other...), nil
	case "intersect":
		other, err := arg(0, focus)
		if err != nil {
			return nil, err
		}
		var out fpCollection
		for _, a := range fpDistinct(in) {
			for _, b := range other {
				if fpEqualItems(a, b) {
					out = append(out, a)
					break
				}
			}
		}
		return out, nil
	case "iif":
		c, err := arg(0, in)
		if err != nil {
			return nil, err
		}
		if b, ok, err := fpTruth(c); err != nil {
			return nil, err
		} else if ok && b {
			return arg(1, in)
		}
		if len(n.args) > 2 {
			return arg(2, in)
		}
		return nil, nil
	case "ofType":
		return nil, errUnsupported
	}
	// String functions on a single string.
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 || in[0].v == nil {
		return nil, errUnsupported
	}
	s, isString := fpString(in[0])
	switch n.name {
	case "toString":
		if in[0].v.kind == jsonNumber || isString {
			return fpCollection{{v: &jsonValue{kind: jsonString, text: in[0].v.text}}}, nil
		}
		return nil, errUnsupported
	case "toInteger":
		if i, err := strconv.Atoi(in[0].v.text); err == nil && (isString || in[0].v.kind == jsonNumber) {
			return fpCollection{{v: &jsonValue{kind: jsonNumber, text: strconv.Itoa(i)}}}, nil
		}
		return nil, nil
	}
	if !isString {
		return nil, errUnsupported
	}
	switch n.name {
	case "length":
		return fpCollection{{v: &jsonValue{kind: jsonNumber, text: strconv.Itoa(len([]rune(s)))}}}, nil
	}
	a, err := arg(0, focus)
	if err != nil {
		return nil, err
	}
	if len(a) != 1 {
		return nil, nil
	}
	as, ok := fpString(a[0])
	if !ok {
		return nil, errUnsupported
	}
	switch n.name {
	case "contains":
		return fpBool(strings.Contains(s, as)), nil
	case "startsWith":
		return fpBool(strings.HasPrefix(s, as)), nil
	case "endsWith":
		return fpBool(strings.HasSuffix(s, as)), nil
	case "matches":
		re, err := regexp.Compile(as)
		if err != nil {
			return nil, errUnsupported
		}
		return fpBool(re.MatchString(s)), nil
	}
	return nil, errUnsupported
}

type fpBinary struct {
	op          string
	left, right fpNode
}

func (n *fpBinary) eval(ctx *fpContext, focus fpCollection) (fpCollection, error) {
	l, err := n.left.eval(ctx, focus)
	if err != nil {
		return nil, err
	}
	r, err := n.right.eval(ctx, focus)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "and", "or", "xor", "implies":
		lb, lok, err := fpTruth(l)
		if err != nil {
			return nil, err
		}
		rb, rok, err := fpTruth(r)
		if err != nil {
			return nil, err
		}
		return fpLogic(n.op, lb, lok, rb, rok), nil
	case "=", "!=":
		if len(l) == 0 || len(r) == 0 {
			return nil, nil
		}
		eq := len(l) == len(r)
		for i := 0; eq && i < len(l); i++ {
			eq = fpEqualItems(l[i], r[i])
		}
		return fpBool(eq == (n.op == "=")), nil
	case "<", ">", "<=", ">=":
		if len(l) == 0 || len(r) == 0 {
			return nil, nil
		}
		if len(l) > 1 || len(r) > 1 {
			return nil, errUnsupported
		}
		c, err := fpCompare(l[0], r[0])
		if err != nil {
			return nil, err
		}
		switch n.op {
		case "<":
			return fpBool(c < 0), nil
		case ">":
			return fpBool(c > 0), nil
		case "<=":
			return fpBool(c <= 0), nil
		default:
			return fpBool(c >= 0), nil
		}
	case "in", "contains":
		elem, coll := l, r
		if n.op == "contains" {
			elem, coll = r, l
		}
		if len(elem) == 0 {
			return nil, nil
		}
		if len(elem) > 1 {
			return nil, errUnsupported
		}
		for _, it := range coll {
			if fpEqualItems(elem[0], it) {
				return fpBool(true), nil
			}
		}
		return fpBool(false), nil
	case "|":
		return fpDistinct(append(append(fpCollection(nil), l...), r...)), nil
	case "&":
		ls, rs := "", ""
		if len(l) == 1 {
			ls, _ = fpString(l[0])
		}
		if len(r) == 1 {
			rs, _ = fpString(r[0])
		}
		return fpCollection{{v: &jsonValue{kind: jsonString, text: ls + rs}}}, nil
	case "+", "-":
		if len(l) == 0 || len(r) == 0 {
			return nil, nil
		}
		if len(l) > 1 || len(r) > 1 {
			return nil, errUnsupported
		}
		if ls, ok := fpString(l[0]); ok && n.op == "+" {
			if rs, ok := fpString(r[0]); ok {
				return fpCollection{{v: &jsonValue{kind: jsonString, text: ls + rs}}}, nil
			}
		}
		a, b := fpNumber(l[0]), fpNumber(r[0])
		if a == nil || b == nil {
			return nil, errUnsupported
		}
		if n.op == "+" {
			a = new(big.Rat).Add(a, b)
		} else {
			a = new(big.Rat).Sub(a, b)
		}
		return fpCollection{{v: &jsonValue{kind: jsonNumber, text: a.RatString()}}}, nil
	}
	return nil, errUnsupported
}

func fpBool(b bool) fpCollection { return fpCollection{{v: &jsonValue{kind: jsonBool, b: b}}} }

// fpTruth reads a collection as a boolean: empty is unknown, a single
// boolean is itself, any other single item is true.
func fpTruth(c fpCollection) (value, known bool, err error) {
	switch {
	case len(c) == 0:
		return false, false, nil
	case len(c) > 1:
		return false, false, errUnsupported
	case c[0].v != nil && c[0].v.kind == jsonBool:
		return c[0].v.b, true, nil
	default:
		return true, true, nil
	}
}

// fpLogic is FHIRPath's three-valued logic; an unknown result is the empty
// collection.
func fpLogic(op string, l, lok, r, rok bool) fpCollection {
	switch op {
	case "and":
		if (lok && !l) || (rok && !r) {
			return fpBool(false)
		}
		if lok && rok {
			return fpBool(true)
		}
	case "or":
		if (lok && l) || (rok && r) {
			return fpBool(true)
		}
		if lok && rok {
			return fpBool(false)
		}
	case "xor":
		if lok && rok {
			return fpBool(l != r)
		}
	case "implies":
		if lok && !l || rok && r {
			return fpBool(true)
		}
		if lok && l && rok {
			return fpBool(r)
		}
	}
	return nil
}

func fpString(it fpItem) (string, bool) {
	if it.v == nil || it.v.kind != jsonString || it.noValue {
		return "", false
	}
	return it.v.text, true
}

func fpNumber(it fpItem) *big.Rat {
	if it.v == nil || it.v.kind != jsonNumber {
		return nil
	}
	r, ok := new(big.Rat).SetString(it.v.text)
	if !ok {
		return nil
	}
	return r
}

func fpInt(c fpCollection) (int, bool) {
	if len(c) != 1 || c[0].v == nil || c[0].v.kind != jsonNumber {
		return 0, false
	}
	i, err := strconv.Atoi(c[0].v.text)
	return i, err == nil
}

// fpCompare orders two numbers, or two strings of the same shape (codes,
// and dates or dateTimes of the same precision, which order as text).
func fpCompare(a, b fpItem) (int, error) {
	if x, y := fpNumber(a), fpNumber(b); x != nil && y != nil {
		return x.Cmp(y), nil
	}
	as, aok := fpString(a)
	bs, bok := fpString(b)
	if !aok || !bok {
		return 0, errUnsupported
	}
	if fpLooksTemporal(as) || fpLooksTemporal(bs) {
		// Dates of different precision or zones need FHIRPath's calendar
		// rules; only the same layout without zone offsets compares as text.
		if len(as) != len(bs) || strings.ContainsAny(as[min(len(as), 10):], "+-") || strings.ContainsAny(bs[min(len(bs), 10):], "+-") {
			return 0, errUnsupported
		}
	}
	return strings.Compare(as, bs), nil
}

func fpLooksTemporal(s string) bool {
	return len(s) >= 4 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9' && s[3] >= '0' && s[3] <= '9'
}

func fpEqualItems(a, b fpItem) bool {
	if a.v == nil || b.v == nil {
		return a.v == b.v
	}
	if x, y := fpNumber(a), fpNumber(b); x != nil && y != nil {
		return x.Cmp(y) == 0
	}
	if a.noValue || b.noValue {
		return false
	}
	return equalValues(a.v, b.v)
}

func fpDistinct(c fpCollection) fpCollection {
	var out fpCollection
next:
	for _, it := range c {
		for _, o := range out {
			if fpEqualItems(it, o) {
				continue next
			}
		}
		out = append(out, it)
	}
	return out
}

// invariant is a compiled resource constraint.
type invariant struct {
	key, human string
	expr       fpNode
}

// check evaluates the invariant on one element. It reports false only when
// the expression is false; an unknown (empty) result or one that leaves the
// supported subset counts as satisfied.
func (inv *invariant) check(resource *jsonValue, resourceDef *node, element *jsonValue, def *node) bool {
	focus := fpCollection{{v: element, def: def}}
	ctx := &fpContext{resource: resource, resourceDef: resourceDef, context: focus}
	r, err := inv.expr.eval(ctx, focus)
	if err != nil {
		return true
	}
	b, ok, err := fpTruth(r)
	return err != nil || !ok || b
}
