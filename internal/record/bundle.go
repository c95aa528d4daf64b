package record

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
)

// EntryResult is the outcome of one batch or transaction entry. Exactly one
// of Err, Record, Search or Deleted describes it.
type EntryResult struct {
	Method  string
	Record  *Record
	Created bool
	Deleted bool
	Search  *Result
	Err     error
}

// BundleResult is the outcome of a batch or transaction, entries in the
// order of the request.
type BundleResult struct {
	Type    string // batch-response | transaction-response
	Entries []EntryResult
}

// entryPlan is one entry of a request Bundle, read and checked.
type entryPlan struct {
	index    int
	method   string
	typ, id  string
	version  string // for GET .../_history/v
	query    string // conditional update/delete or search criteria
	fullURL  string
	resource []byte
	ifMatch  int
	ifNone   string
	history  bool
}

// ProcessBundle runs a batch or transaction Bundle. The whole Bundle is
// validated first: a transaction with any invalid entry is rejected as a
// whole; in a batch, an entry whose resource breaks the rules fails alone.
func (s *Service) ProcessBundle(ctx context.Context, g Guard, raw []byte) (*BundleResult, error) {
	// A Bundle over a limit is refused whole, batch or not: finding its
	// entries needs the parse the limits are there to spare.
	if err := s.CheckLimits(raw, "Bundle"); err != nil {
		return nil, err
	}
	env, err := fhir.ReadEnvelope(raw)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, &IssuesError{Issues: fhir.Validate(raw)}, "the body is not a FHIR resource")
	}
	if env.ResourceType != "Bundle" {
		return nil, errs.E(errs.Invalid, "POST to the base takes a batch or transaction Bundle").InField("resourceType")
	}
	issues := fhir.ValidateType(raw, "Bundle")
	b, perr := fhir.ParseBundle(raw)
	if perr != nil || (b.Type != fhir.BundleBatch && b.Type != fhir.BundleTransaction) {
		if issues.HasErrors() {
			return nil, errs.Wrap(kindOf(issues), &IssuesError{Issues: issues}, "the Bundle is not valid FHIR R4")
		}
		return nil, errs.E(errs.Invalid, "POST to the base takes a Bundle of type batch or transaction").InField("Bundle.type")
	}
	entryIssues := map[int]fhir.Issues{}
	if issues.HasErrors() {
		if b.Type == fhir.BundleTransaction {
			return nil, errs.Wrap(kindOf(issues), &IssuesError{Issues: issues}, "the transaction Bundle is not valid FHIR R4")
		}
		var global fhir.Issues
		for _, is := range issues {
			if i, ok := entryOf(is); ok {
				entryIssues[i] = append(entryIssues[i], is)
			} else if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
				global = append(global, is)
			}
		}
		if len(global) > 0 {
			return nil, errs.Wrap(kindOf(global), &IssuesError{Issues: global}, "the batch Bundle is not valid FHIR R4")
		}
	}
	plans := make([]entryPlan, len(b.Entry))
	planErrs := make([]error, len(b.Entry))
	for i, e := range b.Entry {
		plans[i], planErrs[i] = planEntry(i, e)
		if is := entryIssues[i]; is.HasErrors() {
			planErrs[i] = errs.Wrap(kindOf(is), &IssuesError{Issues: is}, "entry %d is not valid FHIR R4", i)
		}
		if planErrs[i] == nil && (plans[i].method == "POST" || plans[i].method == "PUT") {
			if err := s.checkCodes(ctx, nil, plans[i].typ, plans[i].resource, fmt.Sprintf("Bundle.entry[%d].resource", i)); err != nil {
				planErrs[i] = entryErr(i, err)
			}
		}
	}
	// Every planErrs[i] names its entry once, as "entry i..." (planEntry
	// and the validity error say it themselves); nothing below prefixes
	// them again.
	if b.Type == fhir.BundleBatch {
		return s.batch(ctx, g, plans, planErrs), nil
	}
	for _, err := range planErrs {
		if err != nil {
			return nil, err
		}
	}
	return s.transaction(ctx, g, plans)
}

func kindOf(is fhir.Issues) errs.Kind {
	if is.Malformed() {
		return errs.Invalid
	}
	return errs.Unprocessable
}

// entryOf finds the entry an issue is about from its expression
// (Bundle.entry[3]...).
func entryOf(is fhir.OutcomeIssue) (int, bool) {
	for _, e := range is.Expression {
		rest, ok := strings.CutPrefix(e, "Bundle.entry[")
		if !ok {
			continue
		}
		n := 0
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			n = n*10 + int(rest[j]-'0')
			j++
		}
		if j > 0 && j < len(rest) && rest[j] == ']' {
			return n, true
		}
	}
	return 0, false
}

func entryErr(i int, err error) error {
	if e, ok := errs.As(err); ok {
		c := *e
		c.Message = fmt.Sprintf("entry %d: %s", i, e.Message)
		return &c
	}
	return fmt.Errorf("entry %d: %w", i, err)
}

// planEntry reads an entry's request.
func planEntry(i int, e fhir.BundleEntry) (entryPlan, error) {
	p := entryPlan{index: i, fullURL: e.FullURL, resource: e.Resource}
	if e.Request == nil {
		return p, errs.E(errs.Invalid, "entry %d has no request", i).InField(fmt.Sprintf("Bundle.entry[%d].request", i))
	}
	p.method = e.Request.Method
	p.ifNone = e.Request.IfNoneExist
	if e.Request.IfMatch != "" {
		v, err := parseIfMatch(e.Request.IfMatch)
		if err != nil {
			return p, err
		}
		p.ifMatch = v
	}
	u := e.Request.URL
	if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
		pu, err := url.Parse(u)
		if err != nil {
			return p, errs.E(errs.Invalid, "entry %d: request.url is not a URL", i)
		}
		segs := strings.Split(strings.Trim(pu.Path, "/"), "/")
		start := -1
		for j, sg := range segs {
			if fhir.IsResourceType(sg) {
				start = j
			}
		}
		if start < 0 {
			return p, errs.E(errs.Invalid, "entry %d: request.url names no resource type", i)
		}
		u = strings.Join(segs[start:], "/")
		if pu.RawQuery != "" {
			u += "?" + pu.RawQuery
		}
	}
	path, query, hasQuery := strings.Cut(u, "?")
	p.query = query
	segs := strings.Split(strings.Trim(path, "/"), "/")
	p.typ = segs[0]
	if !fhir.IsResourceType(p.typ) {
		return p, errs.E(errs.Invalid, "entry %d: request.url does not start with a resource type this server knows", i).InField(fmt.Sprintf("Bundle.entry[%d].request.url", i))
	}
	switch len(segs) {
	case 1:
	case 2:
		p.id = segs[1]
		if strings.HasPrefix(p.id, "$") || strings.HasPrefix(p.id, "_") {
			return p, errs.E(errs.Invalid, "entry %d: operations and %s are not supported in a Bundle", i, safeName(strings.TrimLeft(p.id, "$_"))).InField(fmt.Sprintf("Bundle.entry[%d].request.url", i))
		}
	case 3, 4:
		if segs[2] != "_history" {
			return p, errs.E(errs.Invalid, "entry %d: request.url is not a supported form", i)
		}
		p.id, p.history = segs[1], true
		if len(segs) == 4 {
			p.version = segs[3]
		}
	default:
		return p, errs.E(errs.Invalid, "entry %d: request.url is not a supported form", i)
	}
	if p.id != "" && !validID(p.id) {
		return p, errs.E(errs.Invalid, "entry %d: the id in request.url is not a valid FHIR id", i).InField(fmt.Sprintf("Bundle.entry[%d].request.url", i))
	}
	switch p.method {
	case "POST":
		if p.id != "" || hasQuery {
			return p, errs.E(errs.Invalid, "entry %d: POST takes request.url Type", i)
		}
	case "PUT":
		if p.id == "" && !hasQuery {
			return p, errs.E(errs.Invalid, "entry %d: PUT takes request.url Type/id or Type?criteria", i)
		}
		if p.id != "" && hasQuery {
			// Parameters on an update (such as _meta-history) change nothing here.
			p.query = ""
		}
	case "DELETE":
		if p.id == "" && !hasQuery {
			return p, errs.E(errs.Invalid, "entry %d: DELETE takes request.url Type/id or Type?criteria", i)
		}
	case "GET", "HEAD":
	case "PATCH":
		return p, errs.E(errs.Invalid, "entry %d: PATCH is not supported", i)
	default:
		return p, errs.E(errs.Invalid, "entry %d: request.method %s is not supported", i, safeName(p.method))
	}
	if p.method == "POST" || p.method == "PUT" {
		if len(p.resource) == 0 {
			return p, errs.E(errs.Invalid, "entry %d: %s needs a resource", i, p.method).InField(fmt.Sprintf("Bundle.entry[%d].resource", i))
		}
		env, err := fhir.ReadEnvelope(p.resource)
		if err != nil || env.ResourceType != p.typ {
			return p, errs.E(errs.Invalid, "entry %d: the resource type does not match request.url", i).InField(fmt.Sprintf("Bundle.entry[%d].resource.resourceType", i))
		}
		if err := Writable(p.typ); err != nil {
			return p, err
		}
		if p.method == "PUT" && p.id != "" && env.ID != p.id {
			return p, errs.E(errs.Invalid, "entry %d: the resource id must equal the id in request.url", i).InField(fmt.Sprintf("Bundle.entry[%d].resource.id", i))
		}
	}
	if p.method == "DELETE" {
		if err := Writable(p.typ); err != nil {
			return p, err
		}
	}
	return p, nil
}

// batch runs every entry on its own: one entry's failure leaves the others.
func (s *Service) batch(ctx context.Context, g Guard, plans []entryPlan, planErrs []error) *BundleResult {
	out := &BundleResult{Type: fhir.BundleBatchResponse, Entries: make([]EntryResult, len(plans))}
	for i, p := range plans {
		out.Entries[i].Method = p.method
		if planErrs[i] != nil {
			out.Entries[i].Err = planErrs[i]
			continue
		}
		err := s.db.Tx(ctx, func(tx store.Tx) error {
			r, err := s.runEntry(ctx, tx, g, p)
			out.Entries[i] = r
			return err
		})
		if err != nil {
			out.Entries[i] = EntryResult{Method: p.method, Err: err}
		}
	}
	return out
}

// transaction runs every entry in one database transaction, in the order
// R4 prescribes (DELETE, POST, PUT, GET), after resolving the ids that
// POSTs will get, conditional creates and updates, and conditional
// references, so that every reference between entries is rewritten before
// anything is written. Any failure rolls everything back.
func (s *Service) transaction(ctx context.Context, g Guard, plans []entryPlan) (*BundleResult, error) {
	// One resource may be touched by one entry only.
	seen := map[string]int{}
	claim := func(key string, i int) error {
		if key == "" {
			return nil
		}
		if j, ok := seen[key]; ok && j != i {
			return errs.E(errs.Invalid, "entries %d and %d touch the same resource; a transaction may change a resource once", j, i)
		}
		seen[key] = i
		return nil
	}
	for i, p := range plans {
		if p.method == "GET" || p.method == "HEAD" {
			continue
		}
		if p.id != "" {
			if err := claim(p.typ+"/"+p.id, i); err != nil {
				return nil, err
			}
		}
		if p.fullURL != "" {
			if err := claim("url:"+p.fullURL, i); err != nil {
				return nil, err
			}
			if t, id, ok := parseLiteralRef(p.fullURL); ok && !strings.HasPrefix(p.fullURL, "urn:") {
				if err := claim(t+"/"+id, i); err != nil {
					return nil, err
				}
			}
		}
	}
	out := &BundleResult{Type: fhir.BundleTransactionResponse, Entries: make([]EntryResult, len(plans))}
	err := s.db.Tx(ctx, func(tx store.Tx) error {
		refs := map[string]string{} // fullUrl or conditional reference -> Type/id
		existing := map[int]bool{}  // conditional creates that matched
		// The resources conditional creates and updates resolved to, by
		// their criteria: a conditional reference with the same criteria
		// means the same resource, whether it is stored already or this
		// transaction creates it ("" when two entries share criteria).
		conditional := map[string]string{}
		resolved := func(p *entryPlan, criteria string) {
			key := criteriaKey(p.typ, criteria)
			if _, dup := conditional[key]; dup {
				conditional[key] = ""
				return
			}
			conditional[key] = p.typ + "/" + p.id
		}
		for i := range plans {
			p := &plans[i]
			switch {
			case p.method == "POST" && p.ifNone != "":
				ids, err := s.matchIDs(ctx, tx, g, p.typ, p.ifNone, 2)
				if err != nil {
					return entryErr(i, err)
				}
				switch len(ids) {
				case 0:
					p.id = s.newID()
				case 1:
					p.id = ids[0]
					existing[i] = true
				default:
					return entryErr(i, errs.E(errs.PreconditionFailed, "ifNoneExist matches more than one %s", p.typ))
				}
				resolved(p, p.ifNone)
			case p.method == "POST":
				p.id = s.newID()
			case p.method == "PUT" && p.id == "":
				ids, err := s.matchIDs(ctx, tx, g, p.typ, p.query, 2)
				if err != nil {
					return entryErr(i, err)
				}
				switch len(ids) {
				case 0:
					env, _ := fhir.ReadEnvelope(p.resource)
					p.id = env.ID
					if p.id == "" {
						p.id = s.newID()
					}
				case 1:
					p.id = ids[0]
				default:
					return entryErr(i, errs.E(errs.PreconditionFailed, "the conditional update matches more than one %s", p.typ))
				}
				resolved(p, p.query)
				p.query = ""
			}
			if p.fullURL != "" && (p.method == "POST" || p.method == "PUT") {
				refs[p.fullURL] = p.typ + "/" + p.id
			}
		}
		// Conditional references (Type?criteria) in resource bodies.
		for i := range plans {
			p := &plans[i]
			if p.method != "POST" && p.method != "PUT" {
				continue
			}
			for _, r := range referencesIn(p.resource) {
				if _, done := refs[r]; done || !strings.Contains(r, "?") || strings.HasPrefix(r, "urn:") {
					continue
				}
				typ, query, _ := strings.Cut(r, "?")
				if !fhir.IsResourceType(typ) {
					return entryErr(i, errs.E(errs.Invalid, "a conditional reference does not start with a resource type"))
				}
				if to := conditional[criteriaKey(typ, query)]; to != "" {
					refs[r] = to
					continue
				}
				ids, err := s.matchIDs(ctx, tx, g, typ, query, 2)
				if err != nil {
					return entryErr(i, err)
				}
				if len(ids) != 1 {
					return entryErr(i, errs.E(errs.PreconditionFailed, "a conditional reference to %s matches %d resources; it must match exactly one", typ, len(ids)))
				}
				refs[r] = typ + "/" + ids[0]
			}
		}
		for i := range plans {
			p := &plans[i]
			if len(p.resource) > 0 && len(refs) > 0 {
				body, err := rewriteReferences(p.resource, refs)
				if err != nil {
					return entryErr(i, errs.Wrap(errs.Invalid, err, "the resource could not be read"))
				}
				p.resource = body
			}
		}
		// A urn: reference left after resolution points at nothing this
		// transaction or this server holds.
		for i, p := range plans {
			for _, r := range referencesIn(p.resource) {
				if strings.HasPrefix(r, "urn:uuid:") || strings.HasPrefix(r, "urn:oid:") {
					return entryErr(i, errs.E(errs.NotFound, "the reference %s matches no entry of the transaction", safeURN(r)))
				}
			}
		}
		for _, method := range []string{"DELETE", "POST", "PUT", "GET", "HEAD"} {
			for i, p := range plans {
				if p.method != method {
					continue
				}
				if existing[i] {
					rec, err := s.readTx(ctx, tx, g, p.typ, p.id)
					if err != nil {
						return entryErr(i, err)
					}
					out.Entries[i] = EntryResult{Method: p.method, Record: &rec}
					continue
				}
				r, err := s.runEntry(ctx, tx, g, p)
				if err != nil {
					return entryErr(i, err)
				}
				out.Entries[i] = r
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// criteriaKey is a type and search criteria in one form whatever the
// order of the parameters, so that "Practitioner?identifier=s|1" and the
// ifNoneExist "identifier=s|1" of a Practitioner entry compare equal.
func criteriaKey(typ, query string) string {
	vals, err := url.ParseQuery(query)
	if err != nil {
		return typ + "?" + query
	}
	return typ + "?" + vals.Encode()
}

// runEntry performs one planned entry inside tx.
func (s *Service) runEntry(ctx context.Context, tx store.Tx, g Guard, p entryPlan) (EntryResult, error) {
	r := EntryResult{Method: p.method}
	switch p.method {
	case "POST":
		rec, created, err := s.createTx(ctx, tx, g, p.typ, p.id, p.resource, p.ifNone)
		if err != nil {
			return r, err
		}
		r.Record, r.Created = &rec, created
	case "PUT":
		var rec Record
		var err error
		if p.id == "" {
			rec, r.Created, err = s.conditionalUpdateTx(ctx, tx, g, p.typ, p.query, p.resource, p.ifMatch)
		} else {
			rec, err = s.write(ctx, tx, g, p.typ, p.id, p.resource, writeOpts{method: "PUT", ifMatch: p.ifMatch})
			r.Created = rec.Version == 1
		}
		if err != nil {
			return r, err
		}
		r.Record = &rec
	case "DELETE":
		ids := []string{p.id}
		if p.id == "" {
			if err := allowType(ctx, g, Access{Action: ActDelete, Type: p.typ}); err != nil {
				return r, err
			}
			var err error
			ids, err = s.matchIDs(ctx, tx, g, p.typ, p.query, 2)
			if err != nil {
				return r, err
			}
			if len(ids) > 1 {
				return r, errs.E(errs.PreconditionFailed, "the conditional delete matches more than one %s", p.typ)
			}
		}
		for _, id := range ids {
			if _, err := s.deleteTx(ctx, tx, g, p.typ, id); err != nil {
				return r, err
			}
		}
		r.Deleted = true
	default: // GET, HEAD
		switch {
		case p.history:
			return r, errs.E(errs.Invalid, "history in a Bundle entry is not supported; use the history endpoint")
		case p.id != "":
			rec, err := s.readTx(ctx, tx, g, p.typ, p.id)
			if err != nil {
				return r, err
			}
			r.Record = &rec
		default:
			vals, err := url.ParseQuery(p.query)
			if err != nil {
				return r, errs.E(errs.Invalid, "the search in request.url is not a valid query string")
			}
			q, err := s.ParseQuery(p.typ, vals)
			if err != nil {
				return r, err
			}
			res, err := s.search(ctx, g, tx, q)
			if err != nil {
				return r, err
			}
			r.Search = res
		}
	}
	return r, nil
}

// referencesIn lists the values of every "reference" member in a resource.
func referencesIn(raw []byte) []string {
	var out []string
	var walkAny func(v any)
	walkAny = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if s, ok := c.(string); ok && k == "reference" {
					out = append(out, s)
					continue
				}
				walkAny(c)
			}
		case []any:
			for _, c := range x {
				walkAny(c)
			}
		}
	}
	doc, err := decodeDoc(raw)
	if err == nil {
		walkAny(doc)
	}
	return out
}

// rewriteReferences replaces "reference" values found in refs and returns
// compact JSON with every member in its original order and every number
// as written.
func rewriteReferences(raw []byte, refs map[string]string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out bytes.Buffer
	// Per open container: is it an object, and is the next token a key.
	type frame struct{ object, wantKey bool }
	var stack []frame
	lastKey := ""
	strEnc := func(s string) {
		b, _ := json.Marshal(s)
		// json.Marshal escapes <, > and & for HTML; FHIR narrative keeps them.
		b = bytes.ReplaceAll(b, []byte(`\u003c`), []byte("<"))
		b = bytes.ReplaceAll(b, []byte(`\u003e`), []byte(">"))
		b = bytes.ReplaceAll(b, []byte(`\u0026`), []byte("&"))
		out.Write(b)
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		top := len(stack) - 1
		// Separators before a value or key.
		if top >= 0 {
			f := &stack[top]
			if d, ok := tok.(json.Delim); !ok || (d != '}' && d != ']') {
				if f.object {
					if f.wantKey {
						if out.Bytes()[out.Len()-1] != '{' {
							out.WriteByte(',')
						}
					} else {
						out.WriteByte(':')
					}
				} else if out.Bytes()[out.Len()-1] != '[' {
					out.WriteByte(',')
				}
			}
		}
		isKey := top >= 0 && stack[top].object && stack[top].wantKey
		switch v := tok.(type) {
		case json.Delim:
			out.WriteByte(byte(v))
			switch v {
			case '{':
				stack = append(stack, frame{object: true, wantKey: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:len(stack)-1]
				// The container was a value: its parent object now wants a key.
				if n := len(stack); n > 0 && stack[n-1].object {
					stack[n-1].wantKey = true
				}
			}
			lastKey = ""
			continue
		case string:
			if isKey {
				lastKey = v
			} else if lastKey == "reference" {
				if to, ok := refs[v]; ok {
					v = to
				}
			}
			strEnc(v)
		case json.Number:
			out.WriteString(v.String())
		case bool:
			out.WriteString(strconv.FormatBool(v))
		case nil:
			out.WriteString("null")
		}
		if top >= 0 && stack[top].object {
			stack[top].wantKey = !isKey
		}
		if !isKey {
			lastKey = ""
		}
	}
	return out.Bytes(), nil
}

// safeURN shows a urn:uuid reference (an opaque id) in a message and hides
// anything else.
func safeURN(r string) string {
	rest := strings.TrimPrefix(r, "urn:uuid:")
	if len(rest) == 36 && validID(rest) {
		return r
	}
	return "(a urn reference)"
}
