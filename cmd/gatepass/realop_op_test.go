package main

// A real, independently written OpenID Provider for end-to-end tests: the
// zitadel/oidc v3 example OP (exampleop + its in-memory storage), run
// in-process on a loopback port. Nothing here is gatepass code, so the tests
// that drive gatepass against it check gatepass against someone else's reading
// of the specs, not against our own.

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

const (
	// realOPClientID is the desktop client registered at every real OP.
	realOPClientID = "gatepass-desktop"
	// realOPClientSecret is its secret: like a Google "Desktop app" client it
	// has one even though it also must use PKCE.
	realOPClientSecret = "desktop-secret-not-really-secret"

	// The example storage's first test user (storage.NewUserStore): the
	// username is "test-user@" + the issuer's host name.
	realOPPassword = "verysecure"
	realOPEmail    = "test-user@zitadel.ch"
	realOPSubject  = "id1"
)

// realOPClient is a native ("desktop") client as RFC 8252 describes it. The
// example storage's own constructors cannot express it (NativeClient has no
// secret and keeps email out of the ID token), so it is our own op.Client.
type realOPClient struct{}

func (realOPClient) GetID() string { return realOPClientID }

// RedirectURIs registers port-less loopback redirects: for a native client
// zitadel accepts any port on them (RFC 8252 §7.3, op.matchesLoopbackRedirect).
func (realOPClient) RedirectURIs() []string {
	return []string{
		"http://127.0.0.1/callback",
		"http://[::1]/callback",
		"http://localhost/callback",
	}
}
func (realOPClient) PostLogoutRedirectURIs() []string    { return nil }
func (realOPClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeNative }
func (realOPClient) AuthMethod() zoidc.AuthMethod        { return zoidc.AuthMethodBasic }
func (realOPClient) ResponseTypes() []zoidc.ResponseType {
	return []zoidc.ResponseType{zoidc.ResponseTypeCode}
}
func (realOPClient) LoginURL(id string) string            { return "/login/username?authRequestID=" + id }
func (realOPClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (realOPClient) IDTokenLifetime() time.Duration       { return time.Hour }
func (realOPClient) DevMode() bool                        { return false }
func (realOPClient) IsScopeAllowed(scope string) bool     { return false }
func (realOPClient) ClockSkew() time.Duration             { return 0 }
func (realOPClient) IDTokenUserinfoClaimsAssertion() bool { return true } // email in the ID token, as Google does
func (realOPClient) GrantTypes() []zoidc.GrantType {
	return []zoidc.GrantType{zoidc.GrantTypeCode, zoidc.GrantTypeRefreshToken}
}
func (realOPClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (realOPClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// realOPStorage is the example storage with our desktop client added, PKCE
// S256 made mandatory for it (RFC 7636; RFC 9700 §2.1.1), and a count of
// revocation requests so tests can tell "revoked" from "never asked".
type realOPStorage struct {
	*storage.Storage

	mu          sync.Mutex // guards revocations
	revocations int
}

func (s *realOPStorage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	if clientID == realOPClientID {
		return realOPClient{}, nil
	}
	return s.Storage.GetClientByClientID(ctx, clientID)
}

func (s *realOPStorage) AuthorizeClientIDSecret(ctx context.Context, clientID, secret string) error {
	if clientID == realOPClientID {
		if subtle.ConstantTimeCompare([]byte(secret), []byte(realOPClientSecret)) != 1 {
			return errors.New("invalid client secret")
		}
		return nil
	}
	return s.Storage.AuthorizeClientIDSecret(ctx, clientID, secret)
}

func (s *realOPStorage) CreateAuthRequest(ctx context.Context, req *zoidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if req.ClientID == realOPClientID &&
		(req.CodeChallenge == "" || req.CodeChallengeMethod != zoidc.CodeChallengeMethodS256) {
		return nil, zoidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required")
	}
	return s.Storage.CreateAuthRequest(ctx, req, userID)
}

func (s *realOPStorage) RevokeToken(ctx context.Context, tokenOrID, userID, clientID string) *zoidc.Error {
	s.mu.Lock()
	s.revocations++
	s.mu.Unlock()
	return s.Storage.RevokeToken(ctx, tokenOrID, userID, clientID)
}

// realOPs maps an issuer started by startRealOP to its storage, for the
// inspection helpers below.
var realOPs sync.Map // issuer string -> *realOPStorage

// startRealOP starts the zitadel example OP on 127.0.0.1:0 and returns its
// issuer (http on loopback, allowed by gatepass and by op.WithAllowInsecure,
// which exampleop sets) and a native client that has a secret, must use PKCE
// S256, may use authorization_code and refresh_token, gets a refresh token for
// offline_access, rotates it on every refresh (the old one dies) and can revoke
// it (RFC 7009; revocation_endpoint is in discovery). ID tokens are RS256.
func startRealOP(t testing.TB) (issuer, clientID, clientSecret string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for the OP: %v", err)
	}
	issuer = "http://" + ln.Addr().String()
	st := &realOPStorage{
		// Our own (empty) client map: storage.RegisterClients writes a
		// package-level map, which parallel tests would race on.
		Storage: storage.NewStorageWithClients(storage.NewUserStore(issuer+"/"), map[string]*storage.Client{}),
	}
	// A nil logger keeps exampleop from replacing slog's default logger.
	handler := exampleop.SetupServer(issuer, st, nil, false)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed on Close
	realOPs.Store(issuer, st)
	t.Cleanup(func() {
		realOPs.Delete(issuer)
		srv.Close()
	})
	return issuer, realOPClientID, realOPClientSecret
}

func realOPStorageFor(t testing.TB, issuer string) *realOPStorage {
	t.Helper()
	v, ok := realOPs.Load(issuer)
	if !ok {
		t.Fatalf("no real OP running at %s", issuer)
	}
	return v.(*realOPStorage)
}

// realOPRefreshTokenActive reports whether the OP still honours the refresh
// token, without using it (using it would rotate it).
func realOPRefreshTokenActive(t testing.TB, issuer, refreshToken string) bool {
	t.Helper()
	// TokenRequestByRefreshToken reads under the storage's lock (unlike
	// GetRefreshTokenInfo), so this is race-free with the OP's handlers.
	_, err := realOPStorageFor(t, issuer).TokenRequestByRefreshToken(context.Background(), refreshToken)
	return err == nil
}

// realOPRevocations is how many revocation requests reached the OP's storage.
func realOPRevocations(t testing.TB, issuer string) int {
	t.Helper()
	st := realOPStorageFor(t, issuer)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.revocations
}

// realOPBrowse is a scripted browser for the example OP: it opens authURL
// with a cookie jar, submits the login form as the example storage's test
// user, and follows redirects to the redirect_uri named in authURL (the
// client's loopback callback). It fails unless that callback answers 200,
// and reports an OAuth error redirect (RFC 6749 §4.1.2.1) by its code.
// authURL may also be gatepass's start address (realOPResolve).
func realOPBrowse(ctx context.Context, authURL string) error {
	authURL, err := realOPResolve(ctx, authURL)
	if err != nil {
		return err
	}
	au, err := url.Parse(authURL)
	if err != nil {
		return fmt.Errorf("parse authorization URL: %w", err)
	}
	redirect, err := url.Parse(au.Query().Get("redirect_uri"))
	if err != nil || redirect.Host == "" {
		return fmt.Errorf("authorization URL has no usable redirect_uri (%q)", au.Query().Get("redirect_uri"))
	}
	isCallback := func(u *url.URL) bool {
		return u.Scheme == redirect.Scheme && u.Host == redirect.Host && u.Path == redirect.Path
	}

	jar, err := cookiejar.New(nil)
	if err != nil {
		return err
	}
	var callback *url.URL // the callback request, once the OP redirected there
	client := &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 10 {
				return errors.New("more than 10 redirects")
			}
			if isCallback(req.URL) {
				callback = req.URL
			}
			return nil
		},
	}
	get := func(u string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, nil, err
		}
		return realOPDo(client, req)
	}

	resp, body, err := get(authURL)
	if err != nil {
		return fmt.Errorf("open authorization URL: %w", err)
	}
	if callback == nil {
		// Expect the example OP's login page.
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("authorization endpoint: HTTP %d: %s", resp.StatusCode, realOPSnippet(body))
		}
		form, err := realOPParseLoginForm(resp.Request.URL, body)
		if err != nil {
			return fmt.Errorf("login page %s: %w", resp.Request.URL.Path, err)
		}
		form.values.Set("username", "test-user@"+resp.Request.URL.Hostname())
		form.values.Set("password", realOPPassword)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, form.action, strings.NewReader(form.values.Encode()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, body, err = realOPDo(client, req)
		if err != nil {
			return fmt.Errorf("submit login form: %w", err)
		}
		if callback == nil {
			return fmt.Errorf("login did not lead to the callback %s (ended at %s, HTTP %d): %s",
				redirect, resp.Request.URL.Path, resp.StatusCode, realOPSnippet(body))
		}
	}
	if e := callback.Query().Get("error"); e != "" {
		return fmt.Errorf("the OP redirected with error %q: %s", e, callback.Query().Get("error_description"))
	}
	if !isCallback(resp.Request.URL) {
		return fmt.Errorf("ended at %s, not the callback", resp.Request.URL.Redacted())
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback page answered HTTP %d: %s", resp.StatusCode, realOPSnippet(body))
	}
	return nil
}

// realOPResolve returns the authorization URL that gatepass's start address
// (http://127.0.0.1:PORT/, which it opens so that the state stays off the
// opener's command line) redirects to; any other URL (one with a query) comes
// back as it is.
func realOPResolve(ctx context.Context, opened string) (string, error) {
	u, err := url.Parse(opened)
	if err != nil || u.RawQuery != "" {
		return opened, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, opened, nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, body, err := realOPDo(client, req)
	if err != nil {
		return "", fmt.Errorf("open the start address: %w", err)
	}
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") == "" {
		return "", fmt.Errorf("start address answered HTTP %d, not a redirect to the OP: %s", resp.StatusCode, realOPSnippet(body))
	}
	return resp.Header.Get("Location"), nil
}

func realOPDo(client *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, body, err
}

// realOPSnippet shortens a page for an error message. Pages here never hold a
// token: the OP's pages and the callback's page do not echo codes or tokens.
func realOPSnippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

type realOPLoginForm struct {
	action string
	values url.Values
}

// realOPParseLoginForm finds the first POST form and its hidden inputs (the example
// OP keeps the auth request ID in one).
func realOPParseLoginForm(base *url.URL, page []byte) (realOPLoginForm, error) {
	doc, err := html.Parse(strings.NewReader(string(page)))
	if err != nil {
		return realOPLoginForm{}, err
	}
	var form *html.Node
	var find func(*html.Node)
	find = func(n *html.Node) {
		if form != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" && strings.EqualFold(realOPAttr(n, "method"), "post") {
			form = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			find(c)
		}
	}
	find(doc)
	if form == nil {
		return realOPLoginForm{}, fmt.Errorf("no login form: %s", realOPSnippet(page))
	}
	action, err := base.Parse(realOPAttr(form, "action"))
	if err != nil {
		return realOPLoginForm{}, fmt.Errorf("form action: %w", err)
	}
	values := url.Values{}
	var inputs func(*html.Node)
	inputs = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" && realOPAttr(n, "type") == "hidden" {
			values.Set(realOPAttr(n, "name"), realOPAttr(n, "value"))
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			inputs(c)
		}
	}
	inputs(form)
	return realOPLoginForm{action: action.String(), values: values}, nil
}

func realOPAttr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// realOPDiscovery is the part of the OP's discovery document the tests check.
type realOPDiscovery struct {
	Issuer                 string   `json:"issuer"`
	TokenEndpoint          string   `json:"token_endpoint"`
	RevocationEndpoint     string   `json:"revocation_endpoint"`
	UserinfoEndpoint       string   `json:"userinfo_endpoint"`
	ScopesSupported        []string `json:"scopes_supported"`
	CodeChallengeMethods   []string `json:"code_challenge_methods_supported"`
	IDTokenSigningAlgs     []string `json:"id_token_signing_alg_values_supported"`
	GrantTypesSupported    []string `json:"grant_types_supported"`
	TokenEndpointAuthMeths []string `json:"token_endpoint_auth_methods_supported"`
}

func realOPDiscover(t testing.TB, ctx context.Context, issuer string) realOPDiscovery {
	t.Helper()
	p, err := gooidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery at %s: %v", issuer, err)
	}
	var d realOPDiscovery
	if err := p.Claims(&d); err != nil {
		t.Fatalf("decode discovery: %v", err)
	}
	return d
}

// realOPRefresh calls the OP's token endpoint directly with a refresh token
// (RFC 6749 §6) and returns the new tokens, or the OAuth error code.
func realOPRefresh(ctx context.Context, issuer, refreshToken string) (*oauth2.Token, error) {
	p, err := gooidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, err
	}
	conf := &oauth2.Config{ClientID: realOPClientID, ClientSecret: realOPClientSecret, Endpoint: p.Endpoint()}
	return conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// realOPErrorCode returns the RFC 6749 §5.2 error code in err, or "".
func realOPErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// realOPRevoke revokes a token at the OP's revocation endpoint (RFC 7009 §2.1)
// as the desktop client.
func realOPRevoke(ctx context.Context, endpoint, token, hint string) error {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(realOPClientID), url.QueryEscape(realOPClientSecret))
	resp, body, err := realOPDo(http.DefaultClient, req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revocation endpoint: HTTP %d: %s", resp.StatusCode, realOPSnippet(body))
	}
	return nil
}

// realOPCallback is the client's side of RFC 8252 §7.3: a listener on
// 127.0.0.1 and a random port that receives the authorization response.
type realOPCallback struct {
	redirectURL string
	got         chan url.Values
}

func newRealOPCallback(t testing.TB, path string) *realOPCallback {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cb := &realOPCallback{redirectURL: "http://" + ln.Addr().String() + path, got: make(chan url.Values, 1)}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		select {
		case cb.got <- r.URL.Query():
		default:
		}
		if r.URL.Query().Get("error") != "" {
			http.Error(w, "sign-in failed", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "signed in; you can close this tab")
	})}
	go srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed on Close
	t.Cleanup(func() { srv.Close() })
	return cb
}

// TestRealOPHarness proves the harness (startRealOP, realOPBrowse) against
// golang.org/x/oauth2 and go-oidc alone, independently of gatepass: discovery,
// login with PKCE and a secret, ID token verification, refresh with rotation,
// reuse of a rotated refresh token, and revocation.
func TestRealOPHarness(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	issuer, clientID, clientSecret := startRealOP(t)

	d := realOPDiscover(t, ctx, issuer)
	if d.Issuer != issuer {
		t.Errorf("discovery issuer = %q, want %q", d.Issuer, issuer)
	}
	for name, c := range map[string]struct {
		list []string
		want string
	}{
		"scopes_supported":                      {d.ScopesSupported, "offline_access"},
		"code_challenge_methods_supported":      {d.CodeChallengeMethods, "S256"},
		"id_token_signing_alg_values_supported": {d.IDTokenSigningAlgs, "RS256"},
		"grant_types_supported":                 {d.GrantTypesSupported, "refresh_token"},
	} {
		if !slices.Contains(c.list, c.want) {
			t.Errorf("discovery %s = %q, want it to contain %q", name, c.list, c.want)
		}
	}
	if d.RevocationEndpoint == "" {
		t.Fatal("discovery has no revocation_endpoint")
	}

	provider, err := gooidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	cb := newRealOPCallback(t, "/callback")
	conf := &oauth2.Config{
		ClientID: clientID, ClientSecret: clientSecret, Endpoint: provider.Endpoint(),
		RedirectURL: cb.redirectURL, Scopes: []string{gooidc.ScopeOpenID, "email", gooidc.ScopeOfflineAccess},
	}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier), gooidc.Nonce("nonce-1"))
	if err := realOPBrowse(ctx, authURL); err != nil {
		t.Fatalf("browse: %v", err)
	}
	q := <-cb.got
	if q.Get("state") != "state-1" || q.Get("code") == "" {
		t.Fatalf("callback query has state %q and code present=%v; want state-1 and a code", q.Get("state"), q.Get("code") != "")
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for offline_access")
	}

	idVerifier := provider.Verifier(&gooidc.Config{ClientID: clientID})
	checkID := func(raw any) {
		t.Helper()
		s, _ := raw.(string)
		idt, err := idVerifier.Verify(ctx, s)
		if err != nil {
			t.Fatalf("verify ID token: %v", err)
		}
		var claims struct {
			Email string `json:"email"`
		}
		if err := idt.Claims(&claims); err != nil {
			t.Fatal(err)
		}
		if idt.Issuer != issuer || idt.Subject != realOPSubject || claims.Email != realOPEmail {
			t.Errorf("ID token iss=%q sub=%q email=%q, want %q %q %q", idt.Issuer, idt.Subject, claims.Email, issuer, realOPSubject, realOPEmail)
		}
	}
	checkID(tok.Extra("id_token"))

	// Refresh: a new access token and a rotated refresh token.
	tok2, err := realOPRefresh(ctx, issuer, tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.AccessToken == tok.AccessToken {
		t.Error("refresh returned the same access token")
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh token not rotated (new one present=%v)", tok2.RefreshToken != "")
	}
	checkID(tok2.Extra("id_token"))
	if realOPRefreshTokenActive(t, issuer, tok.RefreshToken) {
		t.Error("the OP still honours the refresh token it rotated away")
	}
	if _, err := realOPRefresh(ctx, issuer, tok.RefreshToken); realOPErrorCode(err) != "invalid_grant" {
		t.Errorf("reusing a rotated refresh token: err = %v, want invalid_grant", err)
	}

	// Revoke (RFC 7009): the refresh token stops working.
	if !realOPRefreshTokenActive(t, issuer, tok2.RefreshToken) {
		t.Fatal("fresh refresh token not active")
	}
	if err := realOPRevoke(ctx, d.RevocationEndpoint, tok2.RefreshToken, "refresh_token"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if n := realOPRevocations(t, issuer); n != 1 {
		t.Errorf("revocations = %d, want 1", n)
	}
	if realOPRefreshTokenActive(t, issuer, tok2.RefreshToken) {
		t.Error("refresh token still active after revocation")
	}
	if _, err := realOPRefresh(ctx, issuer, tok2.RefreshToken); realOPErrorCode(err) != "invalid_grant" {
		t.Errorf("refresh after revocation: err = %v, want invalid_grant", err)
	}
}

// TestRealOPStrictness shows the real OP refuses what a sloppy client might
// send, so a passing gatepass test means gatepass did it right.
func TestRealOPStrictness(t *testing.T) {
	issuer, clientID, clientSecret := startRealOP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	provider, err := gooidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		path         string // callback path on the loopback listener
		noPKCE       bool
		secret       string
		wrongVerifer bool
		wantBrowse   string // substring of the browse error; "" = browse succeeds
		wantExchange string // OAuth error code of the exchange; "" = succeeds
	}{
		"ok, any loopback port":         {path: "/callback", secret: clientSecret},
		"unregistered callback path":    {path: "/elsewhere", secret: clientSecret, wantBrowse: "authorization endpoint: HTTP 400"},
		"no PKCE":                       {path: "/callback", secret: clientSecret, noPKCE: true, wantBrowse: `error "invalid_request"`},
		"wrong PKCE verifier":           {path: "/callback", secret: clientSecret, wrongVerifer: true, wantExchange: "invalid_grant"},
		"wrong client secret":           {path: "/callback", secret: "nope", wantExchange: "invalid_client"},
		"no client secret (public use)": {path: "/callback", secret: "", wantExchange: "invalid_client"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cb := newRealOPCallback(t, tc.path)
			conf := &oauth2.Config{
				ClientID: clientID, ClientSecret: tc.secret, Endpoint: provider.Endpoint(),
				RedirectURL: cb.redirectURL, Scopes: []string{gooidc.ScopeOpenID, "email", gooidc.ScopeOfflineAccess},
			}
			verifier := oauth2.GenerateVerifier()
			var opts []oauth2.AuthCodeOption
			if !tc.noPKCE {
				opts = append(opts, oauth2.S256ChallengeOption(verifier))
			}
			err := realOPBrowse(ctx, conf.AuthCodeURL("s", opts...))
			if tc.wantBrowse != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantBrowse) {
					t.Fatalf("browse err = %v, want one containing %q", err, tc.wantBrowse)
				}
				return
			}
			if err != nil {
				t.Fatalf("browse: %v", err)
			}
			q := <-cb.got
			if tc.wrongVerifer {
				verifier = oauth2.GenerateVerifier()
			}
			_, err = conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
			if got := realOPErrorCode(err); got != tc.wantExchange || (tc.wantExchange == "" && err != nil) {
				t.Fatalf("exchange err = %v, want code %q", err, tc.wantExchange)
			}
		})
	}
}

// TestRealOPBrowseErrors checks the scripted browser reports a failed sign-in
// instead of hanging or claiming success.
func TestRealOPBrowseErrors(t *testing.T) {
	issuer, _, _ := startRealOP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tests := map[string]struct {
		authURL string
		want    string
	}{
		"no redirect_uri": {authURL: issuer + "/auth?client_id=" + realOPClientID, want: "no usable redirect_uri"},
		"unknown client": {
			authURL: issuer + "/auth?response_type=code&scope=openid&client_id=nobody&redirect_uri=" +
				url.QueryEscape("http://127.0.0.1:1/callback"),
			want: "authorization endpoint: HTTP 400",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := realOPBrowse(ctx, tc.authURL)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
