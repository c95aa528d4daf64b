package record

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Chained parameters (Observation?subject:Patient.name=peter, or
// patient.name when the reference has one target type) and reverse chains
// (Patient?_has:Observation:patient:code=1234-5) are answered as two
// searches: the criteria on the other type run first as a search of their
// own, by the same guard (the caller must be allowed to search that type,
// its field rules apply to the criteria and to the reference parameter the
// link follows, the matches are confined to the caller's reach and each is
// checked as a read), and only the ids it returns reach the outer search,
// which joins them on resource_refs. So a chain tells the caller nothing
// about records of the other type it could not have searched itself. One
// link only; the inner search may match at most MaxCount records, above
// which the chain is refused as too broad (narrow it). Chains are not
// offered in conditional criteria.

// chain is one chained or reverse-chained condition, resolved when the
// search runs (it needs the guard).
type chain struct {
	key     string     // the parameter as sent, for errors
	ref     *Param     // the reference followed: of the outer type (chain) or of target (_has)
	target  string     // the other type
	inner   url.Values // its criteria
	reverse bool
}

// parseChain parses a chained key (ref[:Type].param[:modifier]) of q.Type.
func (s *Service) parseChain(q *Query, key, value string) error {
	left, right, _ := strings.Cut(key, ".")
	refName, target, _ := strings.Cut(left, ":")
	ref := typeParams[q.Type][refName]
	if ref == nil || ref.Kind != Reference {
		return badParam(key, "a chain starts at a reference parameter of %s", q.Type)
	}
	if target == "" {
		if len(ref.Targets) != 1 {
			return badParam(key, "%s may point to several types: name the one to chain to (%s:Type.param)", ref.Name, ref.Name)
		}
		target = ref.Targets[0]
	}
	if !isTypeName(target) || len(typeParams[target]) == 0 || (len(ref.Targets) > 0 && !contains(ref.Targets, target)) {
		return badParam(key, "%s does not point to %s", ref.Name, safeName(target))
	}
	if strings.Contains(right, ".") || right == "" {
		return badParam(key, "chains of more than one link are not supported")
	}
	q.useElements(key, q.Type, ref)
	return s.addChain(q, chain{key: key, ref: ref, target: target, inner: url.Values{right: {value}}})
}

// parseHas parses _has:Type:ref:param[:modifier] of q.Type.
func (s *Service) parseHas(q *Query, key, value string) error {
	parts := strings.SplitN(strings.TrimPrefix(key, "_has:"), ":", 3)
	if len(parts) != 3 || parts[2] == "" {
		return badParam(key, "_has takes _has:Type:reference:parameter")
	}
	target, refName, param := parts[0], parts[1], parts[2]
	if !isTypeName(target) {
		return badParam(key, "_has names an unknown type")
	}
	ref := typeParams[target][refName]
	if ref == nil || ref.Kind != Reference || (len(ref.Targets) > 0 && !contains(ref.Targets, q.Type)) {
		return badParam(key, "%s has no reference parameter %s to %s", target, safeName(refName), q.Type)
	}
	if strings.HasPrefix(param, "_has") || strings.Contains(param, ".") {
		return badParam(key, "chains of more than one link are not supported")
	}
	return s.addChain(q, chain{key: key, ref: ref, target: target, inner: url.Values{param: {value}}, reverse: true})
}

// addChain checks that the inner criteria parse (so a bad one is a 400
// naming the whole key before anything runs) and records the chain.
func (s *Service) addChain(q *Query, c chain) error {
	if _, err := s.ParseQuery(c.target, c.inner); err != nil {
		var e *errs.Error
		if errors.As(err, &e) {
			return e.InField(c.key)
		}
		return err
	}
	q.chains = append(q.chains, c)
	return nil
}

// resolveChains runs each chain's inner search by g and returns a copy of
// q with a condition per chain on the ids it found.
func (s *Service) resolveChains(ctx context.Context, g Guard, rd store.Querier, q *Query) (*Query, error) {
	out := *q
	out.where = append([]string(nil), q.where...)
	out.args = append([]any(nil), q.args...)
	out.chains = nil
	for _, c := range q.chains {
		inner, err := s.ParseQuery(c.target, c.inner)
		if err != nil {
			return nil, err
		}
		inner.Count, inner.Total = MaxCount, "none"
		if c.reverse {
			inner.useElements(c.key, c.target, c.ref)
		}
		res, err := s.search(ctx, g, rd, inner)
		if err != nil {
			// A refusal that names an inner parameter names the chain
			// the caller sent; one of the whole type (403) stays as it is.
			var e *errs.Error
			if errors.As(err, &e) && e.Field != "" {
				return nil, e.InField(c.key)
			}
			return nil, err
		}
		if res.HasNext {
			return nil, badParam(c.key, "the criteria of %s match more than %d %s records; narrow them", c.key, MaxCount, c.target)
		}
		if len(res.Matches) == 0 {
			out.where = append(out.where, "1 = 0")
			continue
		}
		marks := make([]string, len(res.Matches))
		for i, m := range res.Matches {
			marks[i] = out.arg(m.ID)
		}
		if c.reverse {
			// The matches are c.target's: their rows are found by rid.
			out.where = append(out.where, "r.id IN (SELECT x.target_id FROM resource_refs x WHERE x.param = "+out.arg(paramKey(c.target, c.ref.Name))+
				" AND x.target_type = $1 AND x.rid IN (SELECT m.rid FROM resources m WHERE m.type = "+out.arg(c.target)+" AND m.id IN ("+strings.Join(marks, ", ")+")))")
		} else {
			out.where = append(out.where, ridIn("SELECT x.rid FROM resource_refs x WHERE x.param = "+out.paramArg(c.ref.Name)+
				" AND x.target_type = "+out.arg(c.target)+" AND x.target_id IN ("+strings.Join(marks, ", ")+")"))
		}
	}
	return &out, nil
}
