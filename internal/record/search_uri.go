package record

import "strings"

// uriCond matches a uri parameter: the whole URI, exactly (R4's default
// for uri); several values separated by commas are alternatives. The rows
// are token rows without a system, so :missing works as for tokens. The
// hierarchy modifiers (:below, :above) are not offered.
func (s *Service) uriCond(q *Query, p *Param, modifier, value string) (string, error) {
	neg := false
	switch modifier {
	case "":
	case "not":
		neg = true
	case "below", "above":
		return "", badParam(p.Name, "the :%s modifier is not supported on %s; it matches whole URIs", modifier, p.Name)
	default:
		return "", badParam(p.Name, "unknown modifier :%s", safeName(modifier))
	}
	var ors []string
	for _, v := range splitValues(value) {
		if v == "" {
			return "", badParam(p.Name, "the value of %s is empty", p.Name)
		}
		if p.PHI {
			h, err := tokenIndex(s.ring, q.Type, p, v)
			if err != nil {
				return "", badParam(p.Name, "the value of %s has nothing searchable", p.Name)
			}
			ors = append(ors, "x.code = "+q.arg(blindValue(s.db.Dialect(), h)))
			continue
		}
		ors = append(ors, "x.code = "+q.arg(v))
	}
	sub := "SELECT x.rid FROM resource_tokens x WHERE x.param = " + q.paramArg(p.Name) + " AND (" + strings.Join(ors, " OR ") + ")"
	if neg {
		return ridNotIn(sub), nil
	}
	return ridIn(sub), nil
}
