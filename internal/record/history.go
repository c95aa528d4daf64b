package record

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
)

// HistoryPage is one page of an instance or type history, newest first.
type HistoryPage struct {
	Entries []Record
	HasNext bool
	Count   int
	Offset  int
	// Params are the paging-independent parameters, for links.
	Params url.Values
}

// History returns versions of typ/id (id "" for the whole type), newest
// first. Parameters: _count, _since (an instant), _offset. An instance's
// versions are each passed to the guard as a read, and a refusal fails the
// history. A type history is passed to the guard as a search first, is
// confined to the caller's reach when the guard is a Reacher (as a
// search is), and each version is passed as a record a search returns;
// versions the guard refuses are left out.
func (s *Service) History(ctx context.Context, g Guard, typ, id string, params url.Values) (*HistoryPage, error) {
	if !fhir.IsResourceType(typ) {
		return nil, errs.E(errs.NotFound, "%s is not a FHIR R4 resource type this server knows", safeName(typ))
	}
	page := &HistoryPage{Count: DefaultCount, Params: url.Values{}}
	var since time.Time
	for k, vs := range params {
		v := vs[0]
		switch k {
		case "_count":
			n, err := pagingValue(k, v, 1, MaxCount)
			if err != nil {
				return nil, err
			}
			page.Count = n
			page.Params.Set(k, strconv.Itoa(page.Count))
		case "_offset":
			n, err := pagingValue(k, v, 0, MaxOffset)
			if err != nil {
				return nil, err
			}
			page.Offset = n
		case "_since":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, badParam(k, "_since must be an instant such as 2024-01-02T03:04:05Z")
			}
			since = t.UTC()
			page.Params.Set(k, v)
		case "_format", "_pretty":
		default:
			return nil, badParam(k, "%s is not a history parameter this server supports", safeName(k))
		}
	}
	where := "type = $1"
	args := []any{typ}
	if id != "" {
		where += " AND id = $2"
		args = append(args, id)
	}
	if !since.IsZero() {
		args = append(args, since)
		where += " AND last_updated >= $" + strconv.Itoa(len(args))
	}
	c := confined{from: "resource_history", where: where, args: args}
	action := ActRead
	if id != "" {
		// The type question before the versions are looked up
		// (existence.go).
		if err := allowType(ctx, g, Access{Action: ActRead, Type: typ, ID: id}); err != nil {
			return nil, err
		}
		// Then the record itself, by its current row, whatever the page
		// asked: an id that does not exist and one out of reach are both
		// not known, even for a _since or _offset past every version.
		if err := s.allowInstance(ctx, g, typ, id); err != nil {
			return nil, err
		}
	}
	if id == "" {
		action = ActSearch
		if err := allow(ctx, g, Access{Action: ActSearch, Type: typ}); err != nil {
			return nil, err
		}
		var err error
		if c, err = s.confine(ctx, g, typ, listHistory, false, where, args); err != nil {
			return nil, err
		}
	}
	order := " ORDER BY last_updated DESC, id, version DESC"
	if id != "" {
		order = " ORDER BY version DESC"
	}
	c.args = append(c.args, page.Count+1, page.Offset)
	// The versions are the replaced ones (resource_history) and the
	// current ones (resources), which have the same columns and take the
	// same conditions; one statement reads both under one snapshot, so a
	// write that replaces a version meanwhile cannot make it appear twice
	// or not at all. Each arm keeps its table's patient index when the
	// reach asked for it (confine).
	current := "resources"
	if strings.Contains(c.from, " INDEXED BY ") {
		current += " INDEXED BY resources_by_patient"
	}
	const cols = "id, version, last_updated, deleted, method, patient_id, ciphertext"
	rows, err := s.db.Reader().Query(ctx, "SELECT "+cols+" FROM (SELECT "+cols+" FROM "+c.from+" WHERE "+c.where+
		" UNION ALL SELECT "+cols+" FROM "+current+" WHERE "+c.where+") v"+order+
		" LIMIT $"+strconv.Itoa(len(c.args)-1)+" OFFSET $"+strconv.Itoa(len(c.args)), c.queryArgs(s.db.Dialect())...)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", typ, err)
	}
	type found struct {
		rec Record
		ct  []byte
	}
	var all []found
	for rows.Next() {
		var f found
		var pid *string
		f.rec.Type = typ
		if err := rows.Scan(&f.rec.ID, &f.rec.Version, &f.rec.LastUpdated, &f.rec.Deleted, &f.rec.Method, &pid, &f.ct); err != nil {
			rows.Close()
			return nil, fmt.Errorf("history of %s: %w", typ, err)
		}
		if pid != nil {
			f.rec.PatientID = *pid
		}
		all = append(all, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history of %s: %w", typ, err)
	}
	if len(all) > page.Count {
		page.HasNext = true
		all = all[:page.Count]
	}
	for _, f := range all {
		if err := allow(ctx, g, Access{Action: action, Type: typ, ID: f.rec.ID, PatientID: f.rec.PatientID}); err != nil {
			if id != "" {
				return nil, err
			}
			continue
		}
		if !f.rec.Deleted {
			f.rec.JSON, err = s.ring.Open(ctx, versionAAD(typ, f.rec.ID, f.rec.Version), f.ct)
			if err != nil {
				return nil, fmt.Errorf("open %s/%s version %d: %w", typ, f.rec.ID, f.rec.Version, err)
			}
		}
		page.Entries = append(page.Entries, f.rec)
	}
	return page, nil
}

// allowInstance decides a read of typ/id by its current row (a deleted
// one too: its history is still the record's), before its versions are
// listed.
func (s *Service) allowInstance(ctx context.Context, g Guard, typ, id string) error {
	var pid *string
	err := s.db.Reader().QueryRow(ctx, `SELECT patient_id FROM resources WHERE type = $1 AND id = $2`, typ, id).Scan(&pid)
	if errors.Is(err, store.ErrNoRows) {
		return errNotKnown(typ, id)
	}
	if err != nil {
		return fmt.Errorf("history of %s/%s: %w", typ, safeID(id), err)
	}
	a := Access{Action: ActRead, Type: typ, ID: id}
	if pid != nil {
		a.PatientID = *pid
	}
	return allow(ctx, g, a)
}
