package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/events/webhook"
)

// The event sinks' administration under /api/v1/webhooks
// (internal/events/webhook): the webhooks that receive careflow's domain
// events, and the events they kept refusing.
//
// Authorization: the policy resource Webhook (careflow's own record, of no
// patient), which the default policy gives admin alone, for operations:
//
//	GET    /webhooks                     search
//	POST   /webhooks                     create (the answer shows the secret, once)
//	GET    /webhooks/{id}                read
//	PUT    /webhooks/{id}                update (carries the version read)
//	DELETE /webhooks/{id}                delete
//	GET    /webhooks/{id}/dead-letters   read
//	POST   /webhooks/{id}/dead-letters   update, audited as redrive
//
// Every decision is audited with the webhook's id; nothing here is
// patient data (events carry ids and states).

// webhookType is the policy resource of these routes.
const webhookType = "Webhook"

// Webhooks is what the routes need of the webhooks (webhook.Service).
type Webhooks interface {
	Register(ctx context.Context, createdBy string, in webhook.Input) (webhook.Registered, error)
	List(ctx context.Context) ([]webhook.Webhook, error)
	Get(ctx context.Context, id string) (webhook.Webhook, error)
	Update(ctx context.Context, id string, in webhook.Input) (webhook.Webhook, error)
	Delete(ctx context.Context, id string) error
	DeadLetters(ctx context.Context, id string, after int64, limit int) (webhook.DeadLetterPage, error)
	Redrive(ctx context.Context, id string, ids []int64) (webhook.Redriven, error)
}

func (s *Server) webhookRoutes() {
	s.handleFunc("GET /api/v1/webhooks", s.withWebhooks(s.listWebhooks))
	s.handleFunc("POST /api/v1/webhooks", s.withWebhooks(s.createWebhook))
	s.handleFunc("GET /api/v1/webhooks/{id}", s.withWebhooks(s.getWebhook))
	s.handleFunc("PUT /api/v1/webhooks/{id}", s.withWebhooks(s.updateWebhook))
	s.handleFunc("DELETE /api/v1/webhooks/{id}", s.withWebhooks(s.deleteWebhook))
	s.handleFunc("GET /api/v1/webhooks/{id}/dead-letters", s.withWebhooks(s.listDeadLetters))
	s.handleFunc("POST /api/v1/webhooks/{id}/dead-letters", s.withWebhooks(s.redriveDeadLetters))
}

// webhookCall is one route's work once its access is decided: what it
// answers, or the error to answer with.
type webhookCall func(r *http.Request, p *auth.Principal, id string, q url.Values) (status int, body any, err error)

// withWebhooks is withAccess for these routes: they exist on every server
// and answer 503 where the webhooks are not wired.
func (s *Server) withWebhooks(h func(w http.ResponseWriter, r *http.Request, p *auth.Principal)) http.HandlerFunc {
	return s.withAccess(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		if s.opts.Webhooks == nil {
			s.writeError(w, r, errs.E(errs.Unavailable, "webhooks are not served by this server"))
			return
		}
		h(w, r, p)
	})
}

// webhookAccess decides and audits action on the webhook named by the
// path (if any), then runs call and answers with its result; a failure
// after the decision is audited as such.
func (s *Server) webhookAccess(w http.ResponseWriter, r *http.Request, p *auth.Principal, action auth.Action, auditAction audit.Action, query []string, call webhookCall) {
	id := r.PathValue("id")
	q, err := queryParams(r, query...)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := access{req: auth.Request{Action: action, ResourceType: webhookType}, resourceID: id, auditAction: auditAction}
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status, body, err := call(r, p, id, q)
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	if body == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, "application/json", status, body)
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.webhookAccess(w, r, p, auth.ActionSearch, "", nil, func(r *http.Request, _ *auth.Principal, _ string, _ url.Values) (int, any, error) {
		list, err := s.opts.Webhooks.List(r.Context())
		return http.StatusOK, map[string]any{"webhooks": list}, err
	})
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.webhookAccess(w, r, p, auth.ActionCreate, "", nil, func(r *http.Request, p *auth.Principal, _ string, _ url.Values) (int, any, error) {
		var in webhook.Input
		if err := decodeJSON(r, &in); err != nil {
			return 0, nil, err
		}
		reg, err := s.opts.Webhooks.Register(r.Context(), p.Subject, in)
		if err == nil {
			w.Header().Set("Location", "/api/v1/webhooks/"+reg.ID)
			// The secret is in this answer only: keep it out of caches.
			w.Header().Set("Cache-Control", "no-store")
		}
		return http.StatusCreated, reg, err
	})
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.webhookAccess(w, r, p, auth.ActionRead, "", nil, func(r *http.Request, _ *auth.Principal, id string, _ url.Values) (int, any, error) {
		wh, err := s.opts.Webhooks.Get(r.Context(), id)
		return http.StatusOK, wh, err
	})
}

func (s *Server) updateWebhook(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.webhookAccess(w, r, p, auth.ActionUpdate, "", nil, func(r *http.Request, _ *auth.Principal, id string, _ url.Values) (int, any, error) {
		var in webhook.Input
		if err := decodeJSON(r, &in); err != nil {
			return 0, nil, err
		}
		wh, err := s.opts.Webhooks.Update(r.Context(), id, in)
		return http.StatusOK, wh, err
	})
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.webhookAccess(w, r, p, auth.ActionDelete, "", nil, func(r *http.Request, _ *auth.Principal, id string, _ url.Values) (int, any, error) {
		return http.StatusNoContent, nil, s.opts.Webhooks.Delete(r.Context(), id)
	})
}

func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.webhookAccess(w, r, p, auth.ActionRead, "dead_letters", []string{"after", "limit"}, func(r *http.Request, _ *auth.Principal, id string, q url.Values) (int, any, error) {
		var after int64
		if v := q.Get("after"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return 0, nil, errs.E(errs.Invalid, "must be the next value of a previous page").InField("after")
			}
			after = n
		}
		limit, err := queryLimit(q)
		if err != nil {
			return 0, nil, err
		}
		page, err := s.opts.Webhooks.DeadLetters(r.Context(), id, after, limit)
		return http.StatusOK, page, err
	})
}

// redriveBody names the dead letters to send again; none names them all
// (up to webhook.MaxRedrive, oldest event first).
type redriveBody struct {
	IDs []int64 `json:"ids,omitempty"`
}

func (s *Server) redriveDeadLetters(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.webhookAccess(w, r, p, auth.ActionUpdate, "redrive", nil, func(r *http.Request, _ *auth.Principal, id string, _ url.Values) (int, any, error) {
		var in redriveBody
		if err := decodeJSON(r, &in); err != nil {
			return 0, nil, err
		}
		out, err := s.opts.Webhooks.Redrive(r.Context(), id, in.IDs)
		return http.StatusOK, out, err
	})
}
