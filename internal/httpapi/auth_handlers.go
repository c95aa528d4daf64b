package httpapi

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
)

// identityRoutes registers /api/v1/auth. They are always registered (so the
// OpenAPI document is checked against them); without accounts configured
// they answer 503.
func (s *Server) identityRoutes() {
	s.handleFunc("POST /api/v1/auth/login", s.login)
	s.handleFunc("POST /api/v1/auth/refresh", s.refresh)
	s.handleFunc("POST /api/v1/auth/logout", s.logout)
	s.handleFunc("GET /api/v1/auth/me", s.me)
	s.handleFunc("POST /api/v1/auth/token", s.token)
	s.handleFunc("GET /api/v1/auth/jwks.json", s.jwks)
}

// maxCredentialBody bounds the bodies of login, refresh and token: they
// hold a few short strings, and anything larger is not a real client.
const maxCredentialBody = 64 << 10

func limitCredentialBody(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxCredentialBody)
}

func errNoAccounts() *errs.Error {
	return errs.E(errs.Unavailable, "local accounts are not configured on this server")
}

// TokenResponse is what login and refresh answer (the OAuth2 token response
// shape, so generic clients can read it).
type TokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshToken     string `json:"refresh_token,omitempty"`
	RefreshExpiresIn int64  `json:"refresh_expires_in,omitempty"`
	Scope            string `json:"scope,omitempty"`
}

func secondsUntil(t time.Time) int64 {
	return max(0, int64(time.Until(t).Round(time.Second)/time.Second))
}

func (s *Server) sessionResponse(w http.ResponseWriter, r *http.Request, sess auth.Session) {
	at, err := s.opts.Identity.Tokens.IssueUser(sess.User, sess.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, TokenResponse{
		AccessToken: at.Token, TokenType: "Bearer", ExpiresIn: secondsUntil(at.ExpiresAt),
		RefreshToken: sess.RefreshToken, RefreshExpiresIn: secondsUntil(sess.RefreshExpiresAt),
	})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	id := s.opts.Identity
	if id.Accounts == nil || id.Tokens == nil {
		s.writeError(w, r, errNoAccounts())
		return
	}
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	limitCredentialBody(w, r)
	if err := decodeJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if in.Username == "" {
		s.writeError(w, r, errs.E(errs.Invalid, "username is required").InField("username"))
		return
	}
	if in.Password == "" {
		s.writeError(w, r, errs.E(errs.Invalid, "password is required").InField("password"))
		return
	}
	user, err := id.Accounts.Authenticate(r.Context(), in.Username, in.Password, ClientAddr(r.Context()))
	if err != nil {
		// A refused login is a security event: it is audited (without the
		// username, which may be a mistyped password) before the answer.
		switch errs.KindOf(err) {
		case errs.Unauthenticated, errs.RateLimited, errs.Forbidden:
			if aerr := s.auditLogin(r, auth.User{}, false); aerr != nil {
				s.writeError(w, r, aerr)
				return
			}
		}
		s.writeError(w, r, err)
		return
	}
	sess, err := id.Accounts.StartSession(r.Context(), user)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.auditLogin(r, user, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.sessionResponse(w, r, sess)
}

// auditLogin appends a login attempt to the audit log (HIPAA log-in
// monitoring): who (the account id on success, "anonymous" on failure),
// from where, and the outcome. Like every audited access, a login that
// cannot be recorded is not granted. Servers built without an audit log
// (unit tests of the identity half) skip it.
func (s *Server) auditLogin(r *http.Request, user auth.User, ok bool) error {
	if s.opts.Audit == nil {
		return nil
	}
	e := audit.Entry{
		Actor:        "anonymous",
		Role:         "unknown",
		Action:       "login",
		ResourceType: "User",
		Outcome:      audit.OutcomeDenied,
		Severity:     audit.SeverityWarning,
		RequestID:    RequestID(r.Context()),
		ClientAddr:   clientAddr(r),
	}
	if ok {
		e.Actor, e.Role, e.ResourceID = user.ID, string(user.Role), user.ID
		e.Outcome, e.Severity = audit.OutcomeSuccess, audit.SeverityInfo
	}
	if _, err := s.opts.Audit.Append(r.Context(), e); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the audit log cannot record the login; try again")
	}
	return nil
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) {
	id := s.opts.Identity
	if id.Accounts == nil || id.Tokens == nil {
		s.writeError(w, r, errNoAccounts())
		return
	}
	var in struct {
		RefreshToken string `json:"refresh_token"`
	}
	limitCredentialBody(w, r)
	if err := decodeJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if in.RefreshToken == "" {
		s.writeError(w, r, errs.E(errs.Invalid, "refresh_token is required").InField("refresh_token"))
		return
	}
	sess, err := id.Accounts.Refresh(r.Context(), in.RefreshToken)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.sessionResponse(w, r, sess)
}

// logout revokes the caller's session (the one its access token belongs to)
// and, when the body names a refresh token of the caller's, that token's
// session. Its refresh tokens stop working at once; its access tokens as
// soon as the authenticator's session check notices (serve: within 5 s).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	id := s.opts.Identity
	p, _ := auth.PrincipalFrom(r.Context())
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.writeError(w, r, bodyError(err))
		return
	}
	var in struct {
		RefreshToken string `json:"refresh_token"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := decodeJSON(r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if id.Accounts != nil && id.Tokens != nil && p.Kind == auth.KindUser && p.Issuer == id.Tokens.Issuer() {
		if p.SessionID != "" {
			if err := id.Accounts.RevokeSession(r.Context(), p.Subject, p.SessionID); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		if in.RefreshToken != "" {
			sid, ok, err := id.Accounts.SessionOfRefreshToken(r.Context(), in.RefreshToken)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			if ok {
				if err := id.Accounts.RevokeSession(r.Context(), p.Subject, sid); err != nil {
					s.writeError(w, r, err)
					return
				}
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// Me describes the authenticated caller.
type Me struct {
	Subject   string   `json:"subject"`
	Kind      string   `json:"kind"`
	Role      string   `json:"role"`
	Scopes    []string `json:"scopes"`
	Issuer    string   `json:"issuer"`
	SessionID string   `json:"session_id,omitempty"`
	// Username is set for local accounts: the caller's own login name.
	Username string `json:"username,omitempty"`
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.PrincipalFrom(r.Context())
	out := Me{Subject: p.Subject, Kind: string(p.Kind), Role: string(p.Role), Scopes: p.Scopes,
		Issuer: p.Issuer, SessionID: p.SessionID}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	id := s.opts.Identity
	if id.Accounts != nil && id.Tokens != nil && p.Kind == auth.KindUser && p.Issuer == id.Tokens.Issuer() {
		u, err := id.Accounts.UserByID(r.Context(), p.Subject)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out.Username = u.Username
	}
	writeJSON(w, "application/json", http.StatusOK, out)
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	if s.opts.Identity.Tokens == nil {
		s.writeError(w, r, errNoAccounts())
		return
	}
	body := s.opts.Identity.Tokens.Keys().JWKS()
	// Public keys may be cached (unlike everything else we serve); five
	// minutes keeps a rotation quick to reach verifiers.
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// oauthError is RFC 6749 §5.2's error response, which OAuth2 client
// libraries parse; the token endpoint speaks the protocol's shape rather
// than problem+json.
type oauthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

func (s *Server) writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="careflow"`)
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, "application/json", status, oauthError{Error: code, ErrorDescription: desc})
}

// token is the OAuth2 token endpoint for the client_credentials grant (RFC
// 6749 §4.4), with client_secret_basic or client_secret_post.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	id := s.opts.Identity
	if id.Accounts == nil || id.Tokens == nil {
		s.writeError(w, r, errNoAccounts())
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		s.writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
		return
	}
	// Credentials belong in the body or the Authorization header, never in
	// the URL, where logs and proxies keep them.
	if q := r.URL.Query(); q.Has("client_secret") || q.Has("client_id") {
		s.writeOAuthError(w, http.StatusBadRequest, "invalid_request", "client credentials must not be sent in the URL")
		return
	}
	limitCredentialBody(w, r)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.writeError(w, r, bodyError(err))
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body is not a valid form")
		return
	}
	query := r.URL.Query()
	for k, v := range form {
		if len(v) > 1 || query.Has(k) {
			// RFC 6749 §3.1: parameters must not be repeated (in the body,
			// or in the body and the URL, which we do not read). Only the
			// names this endpoint knows are repeated back: any other is
			// the client's text.
			name := "a parameter"
			switch k {
			case "grant_type", "client_id", "client_secret", "scope":
				name = "parameter " + k
			}
			s.writeOAuthError(w, http.StatusBadRequest, "invalid_request", name+" is repeated")
			return
		}
	}
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		if gt == "" {
			s.writeOAuthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
		} else {
			s.writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		}
		return
	}
	clientID, secret, basic, err := basicCredentials(r.Header.Values("Authorization"))
	if err != nil {
		s.writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "the Authorization header is not valid Basic credentials")
		return
	}
	postID, postSecret := form.Get("client_id"), form.Get("client_secret")
	switch {
	case basic && (postSecret != "" || (postID != "" && postID != clientID)):
		s.writeOAuthError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method")
		return
	case !basic:
		clientID, secret = postID, postSecret
	}
	if clientID == "" || secret == "" {
		s.writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client authentication is required")
		return
	}
	requested, err := auth.ParseScopes(form.Get("scope"))
	if err != nil {
		s.writeOAuthError(w, http.StatusBadRequest, "invalid_scope", "scope is malformed")
		return
	}
	client, err := id.Accounts.AuthenticateClient(r.Context(), clientID, secret)
	if err != nil {
		switch errs.KindOf(err) {
		case errs.Unauthenticated:
			s.writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
			return
		case errs.Forbidden:
			// Authenticated, but its role is not one for machine clients.
			e, _ := errs.As(err)
			s.writeOAuthError(w, http.StatusBadRequest, "unauthorized_client", e.Message)
			return
		}
		s.writeError(w, r, err)
		return
	}
	granted, err := auth.GrantScopes(client.Scopes, requested)
	if err != nil {
		s.writeOAuthError(w, http.StatusBadRequest, "invalid_scope", "none of the requested scopes is allowed for this client")
		return
	}
	at, err := id.Tokens.IssueClient(client, granted)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, "application/json", http.StatusOK, TokenResponse{
		AccessToken: at.Token, TokenType: "Bearer", ExpiresIn: secondsUntil(at.ExpiresAt), Scope: strings.Join(granted, " "),
	})
}

// basicCredentials reads client_secret_basic: base64(urlencode(id) ":"
// urlencode(secret)) (RFC 6749 §2.3.1). No header is not an error.
func basicCredentials(values []string) (id, secret string, present bool, err error) {
	if len(values) == 0 {
		return "", "", false, nil
	}
	if len(values) > 1 || len(values[0]) > 1024 {
		return "", "", true, errs.E(errs.Unauthenticated, "bad Authorization header")
	}
	scheme, enc, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", true, errs.E(errs.Unauthenticated, "bad Authorization header")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return "", "", true, errs.E(errs.Unauthenticated, "bad Authorization header")
	}
	u, p, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", true, errs.E(errs.Unauthenticated, "bad Authorization header")
	}
	if id, err = url.QueryUnescape(u); err != nil {
		return "", "", true, errs.E(errs.Unauthenticated, "bad Authorization header")
	}
	if secret, err = url.QueryUnescape(p); err != nil {
		return "", "", true, errs.E(errs.Unauthenticated, "bad Authorization header")
	}
	return id, secret, true, nil
}
