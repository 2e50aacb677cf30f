package demo

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func startProvider(t *testing.T, opts Options) *Provider {
	t.Helper()
	p, err := Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// callback is a tiny loopback redirect target that records the query it got.
type callback struct {
	srv  *httptest.Server
	mu   sync.Mutex
	last url.Values
}

func newCallback(t *testing.T) *callback {
	t.Helper()
	cb := &callback{}
	cb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb.mu.Lock()
		cb.last = r.URL.Query()
		cb.mu.Unlock()
		if e := r.URL.Query().Get("error"); e != "" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "sign-in failed: "+e)
			return
		}
		io.WriteString(w, "signed in, you can close this tab")
	}))
	t.Cleanup(cb.srv.Close)
	return cb
}

func (cb *callback) URL() string { return cb.srv.URL + "/callback" }

func (cb *callback) query() url.Values {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return cb.last
}

func oauthConfig(p *Provider, redirect string, scopes ...string) *oauth2.Config {
	if len(scopes) == 0 {
		scopes = []string{"openid", "email", "profile"}
	}
	return &oauth2.Config{
		ClientID:     p.ClientID(),
		ClientSecret: p.ClientSecret(),
		Endpoint: oauth2.Endpoint{
			AuthURL:   p.Issuer() + "/authorize",
			TokenURL:  p.Issuer() + "/token",
			AuthStyle: oauth2.AuthStyleInParams,
		},
		RedirectURL: redirect,
		Scopes:      scopes,
	}
}

// login runs the whole code flow through Browse and returns the tokens.
func login(t *testing.T, p *Provider, cfg *oauth2.Config, cb *callback, opts ...oauth2.AuthCodeOption) *oauth2.Token {
	t.Helper()
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	opts = append([]oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier)}, opts...)
	status, body, err := Browse(ctx, cfg.AuthCodeURL("st-123", opts...), true)
	if err != nil || status != http.StatusOK {
		t.Fatalf("Browse = %d %q, %v", status, body, err)
	}
	code := cb.query().Get("code")
	if code == "" {
		t.Fatalf("callback got no code: %v", cb.query())
	}
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return tok
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorize GETs /authorize (AutoApprove providers) and returns the response.
func authorize(t *testing.T, p *Provider, q url.Values) *http.Response {
	t.Helper()
	resp, err := noRedirect.Get(p.Issuer() + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatalf("GET /authorize: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// authParams are valid /authorize parameters for verifier.
func authParams(p *Provider, redirect, verifier string) url.Values {
	return url.Values{
		"client_id":             {p.ClientID()},
		"redirect_uri":          {redirect},
		"response_type":         {"code"},
		"scope":                 {"openid email"},
		"state":                 {"xyz"},
		"access_type":           {"offline"},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
	}
}

// codeFrom extracts the code of a redirect to the callback.
func codeFrom(t *testing.T, resp *http.Response) string {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("authorize status = %d, want 302: %s", resp.StatusCode, b)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in redirect %s", loc)
	}
	return code
}

// postForm posts to the provider and decodes a JSON answer (nil for an empty body).
func postForm(t *testing.T, target string, form url.Values, header http.Header) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("POST %s: body is not JSON: %q", target, b)
		}
	}
	return resp, m
}

func getJSON(t *testing.T, target string, header http.Header) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v", target, err)
	}
	return resp, m
}

func bearerHeader(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// refreshForm is a refresh_token grant with the client credentials in the body.
func refreshForm(p *Provider, rt string) url.Values {
	return url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {rt},
		"client_id": {p.ClientID()}, "client_secret": {p.ClientSecret()},
	}
}

// wantOAuthError checks an RFC 6749 §5.2 error response.
func wantOAuthError(t *testing.T, resp *http.Response, body map[string]any, status int, code string) {
	t.Helper()
	if resp.StatusCode != status || body["error"] != code {
		t.Fatalf("got %d %v, want %d error=%s", resp.StatusCode, body, status, code)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
}
