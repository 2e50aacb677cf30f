// Package demo is a small identity provider that behaves like Google's OAuth
// 2.0 / OpenID Connect endpoints for Desktop clients, a sample gateway that
// accepts its ID tokens, and a scripted browser that clicks through its
// consent page.
//
// It serves `gatepass demo` (a person signs in with a real browser) and the
// fast tests of the broker, CLI, proxy and app. Where Google and the RFCs
// differ, it does what Google does and says so: the token endpoint demands the
// client secret even with PKCE, refresh tokens are issued only for offline
// access, the refresh response omits refresh_token unless rotation is on, and
// revoking an unknown token answers 400 invalid_token.
package demo

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Options configures a Provider. The zero value is a working provider with a
// demo client and a demo user.
type Options struct {
	// ClientID and ClientSecret identify the one registered client, a Google
	// "Desktop app" client: the token endpoint requires the secret even with
	// PKCE. Defaults "gatepass-demo.apps.local" and "demo-secret".
	ClientID, ClientSecret string
	// Email, Subject and Name describe the one demo user. Defaults
	// "dev@example.test", "1000001" and "Demo Developer".
	Email, Subject, Name string
	// AccessTTL and IDTokenTTL are token lifetimes; default one hour each.
	AccessTTL, IDTokenTTL time.Duration
	// CodeTTL is how long an authorization code can be exchanged; default
	// five minutes (RFC 6749 §4.1.2 recommends at most ten).
	CodeTTL time.Duration
	// RotateRefreshTokens makes a refresh return a new refresh token and
	// invalidate the one presented (RFC 9700 §4.14.2). Google does not rotate.
	RotateRefreshTokens bool
	// DetectReuse, with rotation, revokes the whole token family when an
	// already-rotated refresh token is presented again (RFC 9700 §4.14.2).
	DetectReuse bool
	// GoogleRules gives refresh tokens as Google does: only for
	// access_type=offline, and only at the first consent or with
	// prompt=consent; the offline_access scope is neither listed nor honoured.
	GoogleRules bool
	// RefreshTTL, when set, is how long a refresh token works after it was
	// issued: Google ends those of apps whose consent screen is in Testing
	// after 7 days. Zero: until revoked.
	RefreshTTL time.Duration
	// NoIDTokenOnRefresh leaves the ID token out of refresh answers. Google
	// "usually" sends one on refresh, and OpenID Connect Core §12.2 lets any
	// issuer leave it out.
	NoIDTokenOnRefresh bool
	// IssuerTrailingSlash makes the provider name itself with a trailing "/"
	// ("http://127.0.0.1:41234/"), in discovery and in ID tokens' iss, as
	// Auth0 does; the endpoints stay where they are.
	IssuerTrailingSlash bool
	// AutoApprove makes GET /authorize redirect straight back with a code,
	// skipping the consent page.
	AutoApprove bool
	// Now is the provider's clock; default time.Now.
	Now func() time.Time
}

// DefaultClientID is the provider's client ID unless Options names another; every
// config `gatepass demo` writes names it.
const DefaultClientID = "gatepass-demo.apps.local"

const (
	defaultClientSecret = "demo-secret"
	defaultEmail        = "dev@example.test"
	defaultSubject      = "1000001"
	defaultName         = "Demo Developer"

	// pendingTTL bounds how long a consent page stays answerable.
	pendingTTL = 10 * time.Minute
)

// Tamper says how the next issued ID token (or, for TamperAccessExpired, the
// next token answer) is broken, to test verifiers.
type Tamper int

const (
	TamperNone          Tamper = iota
	TamperBadSignature         // signature bytes altered; the JWKS no longer verifies it
	TamperWrongAudience        // aud is another client's ID
	TamperExpired              // exp is in the past
	TamperWrongIssuer          // iss is another issuer
	TamperWrongNonce           // nonce is not the one the sign-in sent
	TamperOtherSubject         // sub is another user's
	TamperAccessExpired        // the answer's expires_in is negative: its access token came expired
)

// tamperAudience and tamperIssuer are what TamperWrongAudience and
// TamperWrongIssuer put into the token.
const (
	tamperAudience = "someone-else.apps.local"
	tamperIssuer   = "https://issuer.invalid"
)

// Stats counts what the provider has done, for tests. Requests answered by
// FailNext are not counted, except on /authorize.
type Stats struct {
	// Authorizations counts GET /authorize requests.
	Authorizations int
	// CodeExchanges and Refreshes count token requests by grant type that
	// passed client authentication, successful or not.
	CodeExchanges, Refreshes int
	// Revocations counts successful POST /revoke requests.
	Revocations int
	// InvalidGrants counts invalid_grant errors returned by the token endpoint.
	InvalidGrants int
	// LastAuthParams is the query of the last GET /authorize.
	LastAuthParams url.Values
}

// Provider is a running demo identity provider. Its methods are safe for
// concurrent use.
type Provider struct {
	opts   Options
	issuer string
	srv    *http.Server
	ln     net.Listener
	mux    *http.ServeMux

	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer

	// mu guards everything below; handlers run on the server's goroutines
	// and tests call the fault-injection methods from theirs.
	mu       sync.Mutex
	pending  map[string]*pendingAuth // consent pages awaiting a decision, by request id
	codes    map[string]*authCode
	refresh  map[string]*refreshToken
	access   map[string]*accessToken
	grants   []*grant
	faults   map[string][]fault
	delays   map[string]time.Duration
	tamper   Tamper
	stats    Stats
	nextGrnt int
	// consented: the user has consented once (GoogleRules: later sign-ins get a
	// refresh token only with prompt=consent).
	consented bool
}

// scopesSupported is the discovery document's list: Google's does not list
// offline_access.
func (p *Provider) scopesSupported() []string {
	if p.opts.GoogleRules {
		return []string{"openid", "email", "profile"}
	}
	return []string{"openid", "email", "profile", "offline_access"}
}

// authRequest is a validated authorization request.
type authRequest struct {
	redirectURI string
	state       string
	scope       []string
	nonce       string
	challenge   string
	offline     bool
}

// pendingAuth is a consent page shown and not yet answered. The form carries
// only its id; the parameters stay on the server. csrf is also set as a
// cookie so only the browser that loaded the page can answer it.
type pendingAuth struct {
	req     authRequest
	csrf    string
	expires time.Time
}

// authCode is an issued authorization code (RFC 6749 §4.1.2).
type authCode struct {
	req     authRequest
	expires time.Time
	used    bool
	grant   *grant // the tokens issued from this code, revoked if it is replayed
}

// grant is one sign-in: the family of access and refresh tokens issued from
// one authorization code and its refreshes. Revoking it ends them all.
type grant struct {
	id      int
	scope   []string
	revoked bool
}

type refreshToken struct {
	grant   *grant
	rotated bool      // replaced by a newer token of the same family
	issued  time.Time // for RefreshTTL
}

type accessToken struct {
	grant   *grant
	expires time.Time
}

type fault struct {
	status      int
	contentType string
	body        string
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves the provider until
// Close. The issuer is "http://" plus the listening address; an unspecified
// address is reported as 127.0.0.1.
func Start(addr string, opts Options) (*Provider, error) {
	p, err := newProvider(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for the demo identity provider (pick another address or port): %w", addr, err)
	}
	tcp := ln.Addr().(*net.TCPAddr)
	ip := tcp.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	p.ln = ln
	p.issuer = "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
	// Every answer is dated by the provider's clock (Options.Now), as a real server
	// dates its answers by its own: a skewed clock shows in the Date header.
	dated := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", p.opts.Now().UTC().Format(http.TimeFormat))
		p.mux.ServeHTTP(w, r)
	})
	p.srv = &http.Server{Handler: dated, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln) //nolint:errcheck // returns http.ErrServerClosed on Close
	return p, nil
}

func newProvider(opts Options) (*Provider, error) {
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = defaultClientSecret
	}
	if opts.Email == "" {
		opts.Email = defaultEmail
	}
	if opts.Subject == "" {
		opts.Subject = defaultSubject
	}
	if opts.Name == "" {
		opts.Name = defaultName
	}
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = time.Hour
	}
	if opts.IDTokenTTL <= 0 {
		opts.IDTokenTTL = time.Hour
	}
	if opts.CodeTTL <= 0 {
		opts.CodeTTL = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate the demo signing key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("compute the signing key id: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(thumb)[:16]
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("create the ID token signer: %w", err)
	}
	p := &Provider{
		opts:    opts,
		key:     key,
		kid:     kid,
		signer:  signer,
		pending: map[string]*pendingAuth{},
		codes:   map[string]*authCode{},
		refresh: map[string]*refreshToken{},
		access:  map[string]*accessToken{},
		faults:  map[string][]fault{},
		delays:  map[string]time.Duration{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", p.endpoint("discovery", p.handleDiscovery))
	mux.HandleFunc("/jwks", p.endpoint("jwks", p.handleJWKS))
	mux.HandleFunc("/authorize", p.endpoint("authorize", p.handleAuthorize))
	mux.HandleFunc("/authorize/decide", p.endpoint("decide", p.handleDecide))
	mux.HandleFunc("/token", p.endpoint("token", p.handleToken))
	mux.HandleFunc("/revoke", p.endpoint("revoke", p.handleRevoke))
	mux.HandleFunc("/userinfo", p.endpoint("userinfo", p.handleUserinfo))
	mux.HandleFunc("/", p.handleRoot)
	p.mux = mux
	return p, nil
}

// Issuer is the provider's issuer URL, e.g. "http://127.0.0.1:41234".
func (p *Provider) Issuer() string { return p.name() }

// name is the issuer as the provider spells it in discovery and in tokens.
func (p *Provider) name() string {
	if p.opts.IssuerTrailingSlash {
		return p.issuer + "/"
	}
	return p.issuer
}

// ClientID is the registered client's ID (after defaults).
func (p *Provider) ClientID() string { return p.opts.ClientID }

// ClientSecret is the registered client's secret (after defaults).
func (p *Provider) ClientSecret() string { return p.opts.ClientSecret }

// Close stops the server and drops open connections.
func (p *Provider) Close() error {
	if p.srv == nil {
		return nil
	}
	if err := p.srv.Close(); err != nil {
		return fmt.Errorf("close the demo identity provider: %w", err)
	}
	return nil
}

// Handler is the provider's HTTP handler, the one Start serves. The issuer in
// its documents is still the one Start chose.
func (p *Provider) Handler() http.Handler { return p.mux }

// FailNext makes the next request to endpoint ("discovery", "jwks", "token",
// "revoke", "authorize", "userinfo", "decide") get this response instead.
// Calls queue: two calls fail the next two requests.
func (p *Provider) FailNext(endpoint string, status int, contentType, body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[endpoint] = append(p.faults[endpoint], fault{status, contentType, body})
}

// SetDelay makes every request to endpoint wait d before it is answered (or
// until the client gives up); 0 clears it.
func (p *Provider) SetDelay(endpoint string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d <= 0 {
		delete(p.delays, endpoint)
		return
	}
	p.delays[endpoint] = d
}

// Tamper sets how the next issued ID token is broken; later tokens are good.
func (p *Provider) Tamper(t Tamper) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tamper = t
}

// RevokeAll revokes every grant issued so far, as a password change does: each
// refresh token then gets invalid_grant and each access token is refused by
// /userinfo. New sign-ins still work.
func (p *Provider) RevokeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range p.grants {
		g.revoked = true
	}
}

// Stats returns a copy of the counters.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	if s.LastAuthParams != nil {
		s.LastAuthParams = cloneValues(s.LastAuthParams)
	}
	return s
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = slices.Clone(vs)
	}
	return c
}

// endpoint wraps a handler with the injected delay and failure of name.
func (p *Provider) endpoint(name string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		d := p.delays[name]
		p.mu.Unlock()
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		p.mu.Lock()
		var f *fault
		if q := p.faults[name]; len(q) > 0 {
			f = &q[0]
			p.faults[name] = q[1:]
			if name == "authorize" {
				p.stats.Authorizations++
				p.stats.LastAuthParams = cloneValues(r.URL.Query())
			}
		}
		p.mu.Unlock()
		if f != nil {
			if f.contentType != "" {
				w.Header().Set("Content-Type", f.contentType)
			}
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(f.status)
			_, _ = w.Write([]byte(f.body))
			return
		}
		h(w, r)
	}
}

func (p *Provider) handleRoot(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"message":   "gatepass demo identity provider",
		"discovery": p.issuer + "/.well-known/openid-configuration",
	})
}

// handleDiscovery serves the OpenID Provider Metadata (OpenID Connect
// Discovery 1.0 §3, RFC 8414).
func (p *Provider) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.name(),
		"authorization_endpoint":                p.issuer + "/authorize",
		"token_endpoint":                        p.issuer + "/token",
		"jwks_uri":                              p.issuer + "/jwks",
		"revocation_endpoint":                   p.issuer + "/revoke",
		"userinfo_endpoint":                     p.issuer + "/userinfo",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      p.scopesSupported(),
		"claims_supported":                      []string{"aud", "azp", "email", "email_verified", "exp", "iat", "iss", "name", "nonce", "sub", "at_hash"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"response_modes_supported":              []string{"query"},
	})
}

// handleJWKS serves the public signing key as a JWK Set (RFC 7517 §5).
func (p *Provider) handleJWKS(w http.ResponseWriter, r *http.Request) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}}
	writeJSON(w, http.StatusOK, set)
}

// handleAuthorize is the authorization endpoint (RFC 6749 §4.1.1) with PKCE
// S256 required (RFC 7636 §4.3) and loopback redirects of any port (RFC 8252
// §7.3). A bad client or redirect URI gets an error page, never a redirect
// (RFC 6749 §4.1.2.1); other errors are sent back to the redirect URI.
func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		renderError(w, http.StatusMethodNotAllowed, "invalid_request", "The authorization endpoint answers GET only.")
		return
	}
	q := r.URL.Query()
	p.mu.Lock()
	p.stats.Authorizations++
	p.stats.LastAuthParams = cloneValues(q)
	p.mu.Unlock()

	switch cid := q.Get("client_id"); {
	case cid == "":
		renderError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: client_id.")
		return
	case cid != p.opts.ClientID:
		renderError(w, http.StatusUnauthorized, "invalid_client", fmt.Sprintf("The OAuth client %q was not found.", cid))
		return
	}
	redirectURI := q.Get("redirect_uri")
	if err := checkLoopbackRedirect(redirectURI); err != nil {
		renderError(w, http.StatusBadRequest, "redirect_uri_mismatch", err.Error())
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) {
		http.Redirect(w, r, redirectWith(redirectURI, url.Values{
			"error": {code}, "error_description": {desc}, "state": {state},
		}), http.StatusFound)
	}
	if rt := q.Get("response_type"); rt != "code" {
		if rt == "" {
			fail("invalid_request", "Missing required parameter: response_type.")
		} else {
			fail("unsupported_response_type", "Only response_type=code is supported.")
		}
		return
	}
	scope := strings.Fields(q.Get("scope"))
	if len(scope) == 0 {
		fail("invalid_request", "Missing required parameter: scope.")
		return
	}
	challenge := q.Get("code_challenge")
	if challenge == "" {
		fail("invalid_request", "Missing required parameter: code_challenge (PKCE, RFC 7636, is required).")
		return
	}
	if m := q.Get("code_challenge_method"); m != "S256" {
		fail("invalid_request", "code_challenge_method must be S256; plain is not allowed.")
		return
	}
	if !validPKCEString(challenge) {
		fail("invalid_request", "Invalid code_challenge.")
		return
	}
	req := authRequest{
		redirectURI: redirectURI,
		state:       state,
		scope:       scope,
		nonce:       q.Get("nonce"),
		challenge:   challenge,
		offline:     q.Get("access_type") == "offline" || slices.Contains(scope, "offline_access"),
	}
	if p.opts.GoogleRules {
		p.mu.Lock()
		first := !p.consented
		p.mu.Unlock()
		req.offline = q.Get("access_type") == "offline" && (first || slices.Contains(strings.Fields(q.Get("prompt")), "consent"))
	}
	if p.opts.AutoApprove {
		http.Redirect(w, r, p.approve(req), http.StatusFound)
		return
	}
	if q.Get("prompt") == "none" {
		fail("consent_required", "The user must consent; prompt=none cannot show the consent page.")
		return
	}
	id, csrf := rand.Text(), rand.Text()
	p.mu.Lock()
	now := p.opts.Now()
	for k, pa := range p.pending {
		if now.After(pa.expires) {
			delete(p.pending, k)
		}
	}
	p.pending[id] = &pendingAuth{req: req, csrf: csrf, expires: now.Add(pendingTTL)}
	p.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: consentCookie(id), Value: csrf, Path: "/authorize",
		MaxAge: int(pendingTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	renderConsent(w, consentData{
		RequestID: id,
		Action:    "/authorize/decide",
		Email:     p.opts.Email,
		Name:      p.opts.Name,
		ClientID:  p.opts.ClientID,
		Redirect:  redirectURI,
		Scopes:    describeScopes(scope, req.offline),
	})
}

func consentCookie(id string) string { return "gatepass_consent_" + id }

// handleDecide receives the consent form: Allow issues a code, Cancel sends
// error=access_denied (RFC 6749 §4.1.2.1).
func (p *Provider) handleDecide(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		renderError(w, http.StatusMethodNotAllowed, "invalid_request", "Answer the consent page with its buttons.")
		return
	}
	if err := r.ParseForm(); err != nil {
		renderError(w, http.StatusBadRequest, "invalid_request", "The consent form could not be read.")
		return
	}
	id := r.PostForm.Get("request_id")
	p.mu.Lock()
	pa := p.pending[id]
	if pa != nil && p.opts.Now().After(pa.expires) {
		delete(p.pending, id)
		pa = nil
	}
	if pa == nil {
		p.mu.Unlock()
		renderError(w, http.StatusBadRequest, "invalid_request", "This sign-in request is unknown, expired or already answered. Start the sign-in again from gatepass.")
		return
	}
	c, err := r.Cookie(consentCookie(id))
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(pa.csrf)) != 1 {
		p.mu.Unlock()
		renderError(w, http.StatusForbidden, "invalid_request", "This consent page was opened in another browser or cookies are disabled. Start the sign-in again.")
		return
	}
	delete(p.pending, id)
	p.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: consentCookie(id), Value: "", Path: "/authorize", MaxAge: -1})

	if r.PostForm.Get("action") != "allow" {
		http.Redirect(w, r, redirectWith(pa.req.redirectURI, url.Values{
			"error": {"access_denied"}, "error_description": {"The user cancelled the sign-in."}, "state": {pa.req.state},
		}), http.StatusFound)
		return
	}
	http.Redirect(w, r, p.approve(pa.req), http.StatusFound)
}

// approve issues a single-use code for req and returns the redirect URL
// carrying it (RFC 6749 §4.1.2), with state verbatim and the granted scope.
func (p *Provider) approve(req authRequest) string {
	code := "4/0demo-" + rand.Text() + rand.Text()
	p.mu.Lock()
	p.codes[code] = &authCode{req: req, expires: p.opts.Now().Add(p.opts.CodeTTL)}
	p.mu.Unlock()
	return redirectWith(req.redirectURI, url.Values{
		"code": {code}, "state": {req.state}, "scope": {strings.Join(req.scope, " ")},
	})
}

// checkLoopbackRedirect accepts the redirect URIs Google accepts for Desktop
// clients: http on 127.0.0.1, [::1] or localhost with any port (RFC 8252
// §7.3), no fragment (RFC 6749 §3.1.2).
func checkLoopbackRedirect(raw string) error {
	if raw == "" {
		return errors.New("Missing required parameter: redirect_uri.")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("The redirect_uri is not a valid URL.")
	}
	if u.Scheme != "http" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("The redirect_uri %q is not allowed: a Desktop client may only redirect to http://127.0.0.1:PORT/, http://[::1]:PORT/ or http://localhost:PORT/.", raw)
	}
	switch u.Hostname() {
	case "127.0.0.1", "::1", "localhost":
	default:
		return fmt.Errorf("The redirect_uri %q is not a loopback address: use http://127.0.0.1:PORT/.", raw)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("The redirect_uri %q needs a port, e.g. http://127.0.0.1:PORT/.", raw)
	}
	return nil
}

// redirectWith adds params to the query of base, keeping its own query
// (RFC 6749 §3.1.2).
func redirectWith(base string, params url.Values) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	for k, vs := range params {
		if len(vs) == 1 && vs[0] == "" && k == "state" {
			continue
		}
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// validPKCEString checks the syntax of a code verifier or challenge: 43 to
// 128 unreserved characters (RFC 7636 §4.1, §4.2).
func validPKCEString(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// tokenResponse is the successful token response (RFC 6749 §5.1, OpenID
// Connect Core §3.1.3.3).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope"`
	IDToken      string `json:"id_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// oauthError is an error response of the token endpoint (RFC 6749 §5.2).
type oauthError struct {
	status int
	code   string
	desc   string
	basic  bool // the client tried HTTP Basic: answer 401 with a challenge
}

func (e *oauthError) write(w http.ResponseWriter) {
	if e.basic && e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="gatepass-demo"`)
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.desc})
}

func badRequest(code, desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: code, desc: desc}
}

// errRevoked is Google's answer for an unknown, expired or revoked refresh token.
func errRevoked() *oauthError {
	return badRequest("invalid_grant", "Token has been expired or revoked.")
}

// handleToken is the token endpoint (RFC 6749 §3.2): authorization_code
// (§4.1.3, with PKCE per RFC 7636 §4.6) and refresh_token (§6) grants.
func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	var resp *tokenResponse
	var oerr *oauthError
	defer func() {
		if oerr != nil {
			if oerr.code == "invalid_grant" {
				p.mu.Lock()
				p.stats.InvalidGrants++
				p.mu.Unlock()
			}
			oerr.write(w)
			return
		}
		w.Header().Set("Pragma", "no-cache")
		writeJSON(w, http.StatusOK, resp)
	}()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oerr = &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "The token endpoint answers POST only."}
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		oerr = badRequest("invalid_request", "Content-Type must be application/x-www-form-urlencoded.")
		return
	}
	if err := r.ParseForm(); err != nil {
		oerr = badRequest("invalid_request", "The request body could not be parsed.")
		return
	}
	if oerr = p.authenticateClient(r); oerr != nil {
		return
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "authorization_code":
		resp, oerr = p.exchangeCode(r.PostForm)
	case "refresh_token":
		resp, oerr = p.refreshGrant(r.PostForm)
	case "":
		oerr = badRequest("invalid_request", "Missing required parameter: grant_type.")
	default:
		oerr = badRequest("unsupported_grant_type", fmt.Sprintf("Invalid grant_type: %s", gt))
	}
}

// authenticateClient checks the client credentials, sent either in the body
// (client_secret_post) or as HTTP Basic with form-urlencoded ID and secret
// (client_secret_basic, RFC 6749 §2.3.1), never both. Like Google, the secret
// is required even though PKCE is used.
func (p *Provider) authenticateClient(r *http.Request) *oauthError {
	form := r.PostForm
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "Malformed client credentials.", basic: true}
		}
		if form.Has("client_secret") {
			return badRequest("invalid_request", "Use one client authentication method, not both.")
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return badRequest("invalid_request", "client_id in the body does not match the Authorization header.")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	switch {
	case id == "":
		return badRequest("invalid_request", "Could not determine client ID from request.")
	case id != p.opts.ClientID:
		return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "The OAuth client was not found.", basic: basic}
	case secret == "":
		return badRequest("invalid_request", "client_secret is missing.")
	case subtle.ConstantTimeCompare([]byte(secret), []byte(p.opts.ClientSecret)) != 1:
		return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "Unauthorized", basic: basic}
	}
	return nil
}

// exchangeCode redeems an authorization code (RFC 6749 §4.1.3). A code is
// single-use: any attempt consumes it, and a replay revokes the tokens issued
// from it (RFC 6749 §4.1.2). The verifier must hash to the challenge
// (RFC 7636 §4.6).
func (p *Provider) exchangeCode(form url.Values) (*tokenResponse, *oauthError) {
	code := form.Get("code")
	if code == "" {
		return nil, badRequest("invalid_request", "Missing required parameter: code.")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.CodeExchanges++
	c := p.codes[code]
	switch {
	case c == nil:
		return nil, badRequest("invalid_grant", "Malformed auth code.")
	case c.used:
		if c.grant != nil {
			c.grant.revoked = true
		}
		return nil, badRequest("invalid_grant", "Bad Request: the code was already redeemed; tokens issued from it are revoked.")
	}
	c.used = true
	if p.opts.Now().After(c.expires) {
		return nil, badRequest("invalid_grant", "Bad Request: the code has expired.")
	}
	if form.Get("redirect_uri") != c.req.redirectURI {
		return nil, badRequest("invalid_grant", "redirect_uri does not match the one in the authorization request.")
	}
	verifier := form.Get("code_verifier")
	if verifier == "" {
		return nil, badRequest("invalid_grant", "Missing code verifier.")
	}
	sum := sha256.Sum256([]byte(verifier))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	if !validPKCEString(verifier) || subtle.ConstantTimeCompare([]byte(want), []byte(c.req.challenge)) != 1 {
		return nil, badRequest("invalid_grant", "Invalid code verifier.")
	}
	p.nextGrnt++
	g := &grant{id: p.nextGrnt, scope: c.req.scope}
	p.grants = append(p.grants, g)
	c.grant = g
	p.consented = true
	return p.issueLocked(g, c.req.scope, c.req.offline, c.req.nonce, p.opts.ClientID)
}

// refreshGrant answers grant_type=refresh_token (RFC 6749 §6). A narrower
// scope may be asked for; a larger one is invalid_scope. An extra
// audience=CLIENT_ID mints an ID token for another client, as Google does
// for IAP. With rotation the old token is retired, and with reuse detection
// presenting a retired one revokes the family (RFC 9700 §4.14.2).
func (p *Provider) refreshGrant(form url.Values) (*tokenResponse, *oauthError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, badRequest("invalid_request", "Missing required parameter: refresh_token.")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Refreshes++
	e := p.refresh[rt]
	switch {
	case e == nil || e.grant.revoked:
		return nil, errRevoked()
	case p.opts.RefreshTTL > 0 && !p.opts.Now().Before(e.issued.Add(p.opts.RefreshTTL)):
		return nil, errRevoked() // as Google answers for a Testing app's token after 7 days
	case e.rotated:
		if p.opts.DetectReuse {
			e.grant.revoked = true
		}
		return nil, errRevoked()
	}
	scope := e.grant.scope
	if s := strings.Fields(form.Get("scope")); len(s) > 0 {
		for _, x := range s {
			if !slices.Contains(e.grant.scope, x) {
				return nil, badRequest("invalid_scope", fmt.Sprintf("Scope %q was not granted.", x))
			}
		}
		scope = s
	}
	aud := p.opts.ClientID
	if a := form.Get("audience"); a != "" {
		aud = a
	}
	if p.opts.RotateRefreshTokens {
		e.rotated = true
	}
	resp, oerr := p.issueLocked(e.grant, scope, p.opts.RotateRefreshTokens, "", aud)
	if resp != nil && p.opts.NoIDTokenOnRefresh {
		resp.IDToken = ""
	}
	return resp, oerr
}

// issueLocked issues an access token, an ID token when openid was granted, and
// a refresh token when withRefresh, all in grant g. p.mu must be held.
func (p *Provider) issueLocked(g *grant, scope []string, withRefresh bool, nonce, aud string) (*tokenResponse, *oauthError) {
	now := p.opts.Now()
	at := "ya29.demo-" + rand.Text() + rand.Text()
	p.access[at] = &accessToken{grant: g, expires: now.Add(p.opts.AccessTTL)}
	resp := &tokenResponse{
		AccessToken: at,
		ExpiresIn:   int64(p.opts.AccessTTL / time.Second),
		TokenType:   "Bearer",
		Scope:       strings.Join(scope, " "),
	}
	if p.tamper == TamperAccessExpired {
		p.tamper = TamperNone
		resp.ExpiresIn = -60
	}
	if slices.Contains(scope, "openid") {
		idt, err := p.signIDTokenLocked(now, scope, nonce, aud, at)
		if err != nil {
			return nil, &oauthError{status: http.StatusInternalServerError, code: "server_error", desc: "The ID token could not be signed."}
		}
		resp.IDToken = idt
	}
	if withRefresh {
		rt := "1//demo-" + rand.Text() + rand.Text()
		p.refresh[rt] = &refreshToken{grant: g, issued: now}
		resp.RefreshToken = rt
	}
	return resp, nil
}

// idClaims are the ID token claims (OpenID Connect Core §2, §3.1.3.6) as
// Google sends them: email only with the email scope, name only with profile.
type idClaims struct {
	Issuer        string `json:"iss"`
	Audience      string `json:"aud"`
	AuthorizedPty string `json:"azp"`
	Subject       string `json:"sub"`
	Email         string `json:"email,omitempty"`
	EmailVerified *bool  `json:"email_verified,omitempty"`
	Name          string `json:"name,omitempty"`
	AtHash        string `json:"at_hash,omitempty"`
	Nonce         string `json:"nonce,omitempty"`
	IssuedAt      int64  `json:"iat"`
	Expiry        int64  `json:"exp"`
}

// signIDTokenLocked signs an RS256 ID token and applies, then clears, the
// pending Tamper. p.mu must be held.
func (p *Provider) signIDTokenLocked(now time.Time, scope []string, nonce, aud, accessToken string) (string, error) {
	sum := sha256.Sum256([]byte(accessToken))
	c := idClaims{
		Issuer:        p.name(),
		Audience:      aud,
		AuthorizedPty: p.opts.ClientID,
		Subject:       p.opts.Subject,
		AtHash:        base64.RawURLEncoding.EncodeToString(sum[:16]),
		Nonce:         nonce,
		IssuedAt:      now.Unix(),
		Expiry:        now.Add(p.opts.IDTokenTTL).Unix(),
	}
	if slices.Contains(scope, "email") {
		verified := true
		c.Email, c.EmailVerified = p.opts.Email, &verified
	}
	if slices.Contains(scope, "profile") {
		c.Name = p.opts.Name
	}
	t := p.tamper
	p.tamper = TamperNone
	switch t {
	case TamperWrongAudience:
		c.Audience = tamperAudience
	case TamperExpired:
		c.IssuedAt = now.Add(-2 * p.opts.IDTokenTTL).Unix()
		c.Expiry = now.Add(-p.opts.IDTokenTTL).Unix()
	case TamperWrongIssuer:
		c.Issuer = tamperIssuer
	case TamperWrongNonce:
		c.Nonce = "not-the-nonce-that-was-sent"
	case TamperOtherSubject:
		c.Subject = "2000002"
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode ID token claims: %w", err)
	}
	jws, err := p.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign ID token: %w", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("serialize ID token: %w", err)
	}
	if t == TamperBadSignature {
		s = corruptSignature(s)
	}
	return s, nil
}

// corruptSignature flips one bit of a compact JWS's signature, keeping it
// well-formed.
func corruptSignature(compact string) string {
	i := strings.LastIndexByte(compact, '.')
	sig, err := base64.RawURLEncoding.DecodeString(compact[i+1:])
	if err != nil || len(sig) == 0 {
		return compact
	}
	sig[len(sig)/2] ^= 0x01
	return compact[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// handleRevoke is the revocation endpoint (RFC 7009 §2). Revoking either a
// refresh or an access token ends the whole grant, as Google does. Unlike RFC
// 7009 §2.2, and like Google, an unknown or already revoked token is a 400
// invalid_token; GET is refused.
func (p *Provider) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "Revoke with POST and token=... in the body."})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "The request body could not be parsed."})
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Missing required parameter: token."})
		return
	}
	p.mu.Lock()
	var g *grant
	if e := p.refresh[tok]; e != nil && !e.rotated {
		g = e.grant
	} else if a := p.access[tok]; a != nil && !p.opts.Now().After(a.expires) {
		g = a.grant
	}
	ok := g != nil && !g.revoked
	if ok {
		g.revoked = true
		p.stats.Revocations++
	}
	p.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_token", "error_description": "Token expired or revoked"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// handleUserinfo is the OpenID Connect UserInfo endpoint (Core §5.3) taking a
// bearer access token (RFC 6750 §2.1).
func (p *Provider) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := bearer(r.Header.Get("Authorization"))
	var a *accessToken
	p.mu.Lock()
	if ok {
		a = p.access[tok]
		if a != nil && (a.grant.revoked || p.opts.Now().After(a.expires)) {
			a = nil
		}
	}
	p.mu.Unlock()
	if a == nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "Send a valid access token: Authorization: Bearer <access token>."})
		return
	}
	info := map[string]any{"sub": p.opts.Subject}
	if slices.Contains(a.grant.scope, "email") {
		info["email"], info["email_verified"] = p.opts.Email, true
	}
	if slices.Contains(a.grant.scope, "profile") {
		info["name"] = p.opts.Name
	}
	writeJSON(w, http.StatusOK, info)
}

// bearer extracts the token of an "Authorization: Bearer" header; the scheme
// is case-insensitive (RFC 6750 §2.1, RFC 9110 §11.1).
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
