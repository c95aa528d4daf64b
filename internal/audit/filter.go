package audit

import (
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// Query parameters FilterFromQuery understands, for GET /api/v1/audit.
const (
	ParamSince        = "since"         // RFC 3339 time, inclusive
	ParamUntil        = "until"         // RFC 3339 time, exclusive
	ParamActor        = "actor"         // user id
	ParamPatient      = "patient"       // patient id
	ParamResourceType = "resource_type" // e.g. Patient
	ParamResourceID   = "resource_id"
	ParamAction       = "action"     // read, search, create, update, delete, export, break_glass
	ParamOutcome      = "outcome"    // success, denied, error
	ParamSeverity     = "severity"   // info, warning, high
	ParamRequestID    = "request_id" // X-Request-Id of the audited request
	ParamOrder        = "order"      // oldest (default) or newest
	ParamAfter        = "after"      // the previous page's next cursor
	ParamLimit        = "limit"      // 1..MaxListLimit
)

// FilterFromQuery reads a Filter from URL query parameters (the Param
// constants). It rejects unknown and repeated parameters and malformed
// values with an errs.Invalid naming the parameter, so a typo is an error
// rather than a silently wider listing.
func FilterFromQuery(q url.Values) (Filter, error) {
	var f Filter
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same parameter first every time
	for _, k := range keys {
		vs := q[k]
		if len(vs) != 1 {
			return Filter{}, errs.E(errs.Invalid, "must be given once").InField(k)
		}
		v := vs[0]
		if len(v) > maxField {
			return Filter{}, errs.E(errs.Invalid, "is too long").InField(k)
		}
		var err error
		switch k {
		case ParamSince:
			f.Since, err = parseQueryTime(k, v)
		case ParamUntil:
			f.Until, err = parseQueryTime(k, v)
		case ParamActor:
			f.Actor = v
		case ParamPatient:
			f.PatientID = v
		case ParamResourceType:
			f.ResourceType = v
		case ParamResourceID:
			f.ResourceID = v
		case ParamAction:
			f.Action = Action(v)
		case ParamRequestID:
			f.RequestID = v
		case ParamOutcome:
			switch o := Outcome(v); o {
			case OutcomeSuccess, OutcomeDenied, OutcomeError:
				f.Outcome = o
			default:
				err = errs.E(errs.Invalid, "must be success, denied or error").InField(k)
			}
		case ParamSeverity:
			switch s := Severity(v); s {
			case SeverityInfo, SeverityWarning, SeverityHigh:
				f.Severity = s
			default:
				err = errs.E(errs.Invalid, "must be info, warning or high").InField(k)
			}
		case ParamOrder:
			switch v {
			case "oldest":
			case "newest":
				f.Newest = true
			default:
				err = errs.E(errs.Invalid, "must be oldest or newest").InField(k)
			}
		case ParamAfter:
			n, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil || n < 0 {
				err = errs.E(errs.Invalid, "must be a sequence number (the previous page's next)").InField(k)
			}
			f.After = &n
		case ParamLimit:
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 1 || n > MaxListLimit {
				err = errs.E(errs.Invalid, "must be between 1 and %d", MaxListLimit).InField(k)
			}
			f.Limit = n
		default:
			err = errs.E(errs.Invalid, "is not a filter of the audit log").InField(k)
		}
		if err != nil {
			return Filter{}, err
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return Filter{}, errs.E(errs.Invalid, "must be after since").InField(ParamUntil)
	}
	return f, nil
}

func parseQueryTime(k, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errs.E(errs.Invalid, "must be an RFC 3339 time such as 2026-03-01T09:30:00Z").InField(k)
	}
	return t.UTC(), nil
}
