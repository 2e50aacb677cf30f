package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker/demo"
)

// ---- shared helpers for broker_test.go and login_test.go ----

const testProfile = "work"

// fakeClock is a settable Clock, shared by the broker and the demo issuer.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// countingTransport counts requests by URL path, including those the demo
// answers with an injected failure (which demo.Stats does not count).
type countingTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	hits map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.hits[r.URL.Path]++
	c.mu.Unlock()
	return c.base.RoundTrip(r)
}

func (c *countingTransport) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits[path]
}

// testEnv is a demo issuer, a fake keychain and clock, and a Broker on them.
type testEnv struct {
	t       *testing.T
	idp     *demo.Provider
	kc      *FakeKeychain
	clock   *fakeClock
	tr      *countingTransport
	client  *http.Client
	lockDir string
	cfg     *Config
	b       *Broker
}

func newEnv(t *testing.T, opts demo.Options) *testEnv {
	t.Helper()
	clock := newFakeClock()
	opts.Now = clock.Now
	idp, err := demo.Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatalf("start demo issuer: %v", err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	base := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	tr := &countingTransport{base: base, hits: map[string]int{}}
	e := &testEnv{
		t:       t,
		idp:     idp,
		kc:      &FakeKeychain{},
		clock:   clock,
		tr:      tr,
		client:  &http.Client{Transport: tr, Timeout: 10 * time.Second},
		lockDir: t.TempDir(),
		cfg: &Config{Listen: DefaultListen, Profiles: []*Profile{{
			Name:         testProfile,
			Issuer:       idp.Issuer(),
			ClientID:     idp.ClientID(),
			ClientSecret: idp.ClientSecret(),
			Scopes:       []string{"openid", "email"},
			Inject:       IDToken,
		}}},
	}
	e.b = e.newBroker()
	return e
}

// newBroker is another Broker on the same keychain, lock directory, clock
// and issuer, as a second gatepass process would be.
func (e *testEnv) newBroker() *Broker {
	e.t.Helper()
	b, err := New(e.cfg, Deps{
		Keychain:   e.kc,
		Clock:      e.clock,
		HTTPClient: e.client,
		LockDir:    e.lockDir,
		Jitter:     func() float64 { return 0 },
	})
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	return b
}

// browseResult is what the scripted browser saw on the callback page.
type browseResult struct {
	status int
	body   string
	err    error
}

// demoBrowser is a Browser that clicks through the demo consent page in a
// goroutine, as a person would in a real browser.
type demoBrowser struct {
	approve bool
	mu      sync.Mutex
	urls    []string
	pages   chan browseResult
}

func newDemoBrowser(approve bool) *demoBrowser {
	return &demoBrowser{approve: approve, pages: make(chan browseResult, 4)}
}

func (d *demoBrowser) Open(u string) error {
	d.mu.Lock()
	d.urls = append(d.urls, u)
	d.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		st, body, err := demo.Browse(ctx, u, d.approve)
		d.pages <- browseResult{st, body, err}
	}()
	return nil
}

func (d *demoBrowser) opened() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.urls...)
}

// page waits for the callback page the browser ended on.
func (d *demoBrowser) page(t *testing.T) browseResult {
	t.Helper()
	select {
	case r := <-d.pages:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the browser never finished")
		return browseResult{}
	}
}

// login signs the profile in through the demo consent page and fails the
// test on error.
func (e *testEnv) login() ProfileStatus {
	e.t.Helper()
	st, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: newDemoBrowser(true), Timeout: 10 * time.Second})
	if err != nil {
		e.t.Fatalf("Login: %v", err)
	}
	return st
}

// signedInAgent signs in, then returns another process's broker (not started)
// with a subscription to its events.
func (e *testEnv) signedInAgent() (*Broker, <-chan Event) {
	e.t.Helper()
	e.login()
	agent := e.newBroker()
	ch, cancel := agent.Subscribe()
	e.t.Cleanup(cancel)
	return agent, ch
}

// startAgent makes b the agent until the test ends, and at the end waits for
// the work it began: a refresh still taking its lock file in the test's
// temporary directory outlived a test that only cancelled (CI at 556c262:
// "TempDir RemoveAll cleanup: … directory not empty").
func startAgent(t *testing.T, b *Broker) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := b.Start(ctx)
	t.Cleanup(func() { cancel(); <-stopped })
	return ctx
}

// tokenNoReuse gets an ID token from b and fails the test on an error, or on any
// invalid_grant the issuer has answered so far: a rotated refresh token lost, or one
// spent twice, shows as one (the demo detects reuse).
func (e *testEnv) tokenNoReuse(b *Broker, what string) {
	e.t.Helper()
	if _, err := b.Token(context.Background(), testProfile, IDToken, time.Minute); err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
	if st := e.idp.Stats(); st.InvalidGrants != 0 {
		e.t.Fatalf("%s: the issuer answered invalid_grant %d times: a rotated refresh token was lost or spent twice", what, st.InvalidGrants)
	}
}

// entry decodes the keychain entry without consuming injected failures.
func (e *testEnv) entry() (*Entry, bool) {
	e.t.Helper()
	raw, ok := e.kc.Peek(KeychainService, testProfile)
	if !ok {
		return nil, false
	}
	en, err := decodeEntry(testProfile, raw)
	if err != nil {
		e.t.Fatalf("keychain entry does not decode: %v", err)
	}
	return en, true
}

// tokenPrefixes are how the demo's access, refresh and ID tokens start.
var tokenPrefixes = []string{"ya29.", "1//", "eyJ"}

// assertNoTokenText fails if an error message could hold a token.
func assertNoTokenText(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, p := range tokenPrefixes {
		if strings.Contains(err.Error(), p) {
			t.Errorf("error message contains token text %q: %s", p, err)
		}
	}
}

func assertContains(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("no error, want one containing %q", want)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// waitEvent reads events until one has state want.
func waitEvent(t *testing.T, ch <-chan Event, want State) Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event channel closed before state %s", want)
			}
			if ev.Status.State == want {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event with state %s", want)
			return Event{}
		}
	}
}

// ---- tests ----

func TestNewNeedsKeychain(t *testing.T) {
	if _, err := New(&Config{}, Deps{}); err == nil {
		t.Fatal("New without a keychain succeeded")
	}
}

func TestTokenRefreshesOnlyWithinMinTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	ctx := context.Background()
	e.login()
	first, err := e.b.Token(ctx, testProfile, IDToken, time.Minute)
	if err != nil {
		t.Fatalf("Token right after login: %v", err)
	}
	if !strings.HasPrefix(first.Value, "eyJ") || first.Kind != IDToken {
		t.Fatalf("Token = %s %s, want an ID token", first.Kind, Redacted(first.Value))
	}
	acc, err := e.b.Token(ctx, testProfile, AccessToken, time.Minute)
	if err != nil || !strings.HasPrefix(acc.Value, "ya29.") {
		t.Fatalf("access Token = %s, %v; want an access token", Redacted(acc.Value), err)
	}

	e.clock.Advance(58 * time.Minute) // 2 minutes left
	tok, err := e.b.Token(ctx, testProfile, IDToken, time.Minute)
	if err != nil || tok.Value != first.Value {
		t.Fatalf("with 2m left and minTTL 1m: Token = %s, %v; want the same token", Redacted(tok.Value), err)
	}
	if n := e.idp.Stats().Refreshes; n != 0 {
		t.Fatalf("refreshes = %d with 2m left and minTTL 1m, want 0", n)
	}

	tok, err = e.b.Token(ctx, testProfile, IDToken, 5*time.Minute)
	if err != nil {
		t.Fatalf("with 2m left and minTTL 5m: %v", err)
	}
	if n := e.idp.Stats().Refreshes; n != 1 {
		t.Fatalf("refreshes = %d with 2m left and minTTL 5m, want 1", n)
	}
	if tok.Value == first.Value || !tok.Expiry.After(e.clock.Now().Add(5*time.Minute)) {
		t.Fatalf("refreshed token: same %v, expiry %v (now %v); want a new one valid 5m", tok.Value == first.Value, tok.Expiry, e.clock.Now())
	}
	// The access token comes from the same refresh and is measured on the
	// broker's clock too.
	acc2, err := e.b.Token(ctx, testProfile, AccessToken, 5*time.Minute)
	if err != nil || acc2.Value == acc.Value {
		t.Fatalf("access token after refresh: new %v, %v", acc2.Value != acc.Value, err)
	}
	if n := e.idp.Stats().Refreshes; n != 1 {
		t.Fatalf("refreshes = %d after asking for the access token, want still 1", n)
	}
	if st, _ := e.b.Status(testProfile); st.State != StateSignedIn || !st.Expiry.Equal(tok.Expiry) {
		t.Fatalf("status %s expiry %v, want signed-in with the ID token's expiry %v", st.State, st.Expiry, tok.Expiry)
	}
}

// TestIssuerWithTrailingSlash: an issuer that names itself with a trailing "/"
// (Auth0) works though the config keeps it without: discovery, ID-token
// verification at sign-in and after a refresh, and the keychain entry still
// matches the profile.
func TestIssuerWithTrailingSlash(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{IssuerTrailingSlash: true})
	if !strings.HasSuffix(e.idp.Issuer(), "/") {
		t.Fatalf("demo issuer %q has no trailing slash", e.idp.Issuer())
	}
	// As ParseConfig keeps `issuer = "http://127.0.0.1:N/"`.
	e.cfg.Profiles[0].Issuer = strings.TrimSuffix(e.idp.Issuer(), "/")
	e.b = e.newBroker()
	if err := CheckDiscovery(context.Background(), e.cfg.Profiles[0], e.client); err != nil {
		t.Fatalf("CheckDiscovery: %v", err)
	}
	st := e.login()
	if st.State != StateSignedIn || st.Email != "dev@example.test" {
		t.Fatalf("after login: %+v", st)
	}
	e.clock.Advance(59 * time.Minute)
	tok, err := e.newBroker().Token(context.Background(), testProfile, IDToken, 5*time.Minute)
	if err != nil || e.idp.Stats().Refreshes != 1 {
		t.Fatalf("refresh in a new process: %s, %v (refreshes %d)", Redacted(tok.Value), err, e.idp.Stats().Refreshes)
	}
}

func TestTokenMinTTLLongerThanLifetime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	_, err := e.b.Token(context.Background(), testProfile, IDToken, 2*time.Hour)
	assertContains(t, err, "shorter than", "--min-ttl")
	assertNoTokenText(t, err)
}

func TestTokenSingleFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	// The second process starts cold: no token in memory at all.
	b := e.newBroker()
	e.clock.Advance(2 * time.Hour)
	const n = 50
	var wg sync.WaitGroup
	toks := make([]Token, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { toks[i], errs[i] = b.Token(context.Background(), testProfile, IDToken, time.Minute) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if toks[i].Value != toks[0].Value {
			t.Fatalf("caller %d got a different token than caller 0", i)
		}
	}
	if got := e.idp.Stats().Refreshes; got != 1 {
		t.Fatalf("issuer saw %d refreshes for %d concurrent callers, want 1", got, n)
	}
	if got := e.tr.count("/token"); got != 2 { // login's code exchange + one refresh
		t.Fatalf("token endpoint requests = %d, want 2", got)
	}
}

func TestTokenRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{RotateRefreshTokens: true, DetectReuse: true})
	ctx := context.Background()
	e.login()
	prev, _ := e.entry()
	seen := map[string]bool{prev.RefreshToken: true}
	const rounds = 12
	for i := range rounds {
		e.clock.Advance(2 * time.Hour)
		b := e.b
		if i%3 == 2 {
			b = e.newBroker() // another process picks up from the keychain
		}
		if _, err := b.Token(ctx, testProfile, IDToken, time.Minute); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		cur, ok := e.entry()
		if !ok {
			t.Fatalf("round %d: keychain entry gone", i)
		}
		if seen[cur.RefreshToken] {
			t.Fatalf("round %d: keychain still holds an already used refresh token", i)
		}
		seen[cur.RefreshToken] = true
		if cur.Subject != prev.Subject || cur.Email != prev.Email || cur.Issuer != prev.Issuer || cur.ClientID != prev.ClientID {
			t.Fatalf("round %d: rotation changed the entry's metadata: %v -> %v", i, prev, cur)
		}
		if !cur.SavedAt.Equal(e.clock.Now().UTC().Truncate(time.Second)) {
			t.Fatalf("round %d: SavedAt %v, want %v", i, cur.SavedAt, e.clock.Now())
		}
		prev = cur
	}
	st := e.idp.Stats()
	if st.InvalidGrants != 0 || st.Refreshes != rounds {
		t.Fatalf("issuer stats: %d invalid_grant, %d refreshes; want 0 and %d", st.InvalidGrants, st.Refreshes, rounds)
	}
	if w := e.kc.Writes(); w != rounds+1 {
		t.Fatalf("keychain writes = %d, want %d (login + one per rotation)", w, rounds+1)
	}
}

func TestTokenNoRotationDoesNotRewriteKeychain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	before, _ := e.entry()
	for range 3 {
		e.clock.Advance(2 * time.Hour)
		if _, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := e.entry()
	if e.kc.Writes() != 1 || after.RefreshToken != before.RefreshToken {
		t.Fatalf("keychain writes = %d, token changed %v; want 1 write (login) and the same token",
			e.kc.Writes(), after.RefreshToken != before.RefreshToken)
	}
}

func TestTokenRotationKeychainSetFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{RotateRefreshTokens: true, DetectReuse: true})
	ctx := context.Background()
	e.login()
	orig, _ := e.entry()

	e.clock.Advance(2 * time.Hour)
	e.kc.FailNext("set", errors.New("keychain is locked"))
	_, err := e.b.Token(ctx, testProfile, IDToken, time.Minute)
	assertContains(t, err, "rotated refresh token", "keychain is locked")
	assertNoTokenText(t, err)
	if cur, _ := e.entry(); cur.RefreshToken != orig.RefreshToken {
		t.Fatal("the failed save changed the keychain")
	}
	refreshes := e.idp.Stats().Refreshes

	// Within the backoff the issuer is not asked again.
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); err == nil {
		t.Fatal("Token within the backoff succeeded without a refresh")
	}
	if got := e.idp.Stats().Refreshes; got != refreshes {
		t.Fatalf("refreshes %d -> %d within the backoff", refreshes, got)
	}

	// After it, the rotated token kept in memory is used: no invalid_grant,
	// no reuse detection, and the keychain catches up.
	e.clock.Advance(backoff(1) + time.Second)
	e.tokenNoReuse(e.b, "refresh after a failed save of the rotated token")
	// The keychain now holds a live token: a fresh process can refresh with it.
	e.clock.Advance(2 * time.Hour)
	e.tokenNoReuse(e.newBroker(), "another process refreshing from the keychain")
}

func TestLogoutAfterUnsavedRotationRevokesLiveToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{RotateRefreshTokens: true, DetectReuse: true})
	ctx := context.Background()
	e.login()
	e.clock.Advance(2 * time.Hour)
	e.kc.FailNext("set", errors.New("keychain is locked"))
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); err == nil {
		t.Fatal("want the save error")
	}
	res, err := e.b.Logout(ctx, testProfile)
	if err != nil || !res.Revoked {
		t.Fatalf("Logout = %+v, %v; want the rotated (live) token revoked", res, err)
	}
	if got := e.idp.Stats().Revocations; got != 1 {
		t.Fatalf("revocations = %d, want 1", got)
	}
	if _, ok := e.entry(); ok {
		t.Fatal("entry not deleted")
	}
}

func TestTokenInvalidGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	ctx := context.Background()
	e.login()
	ch, cancel := e.b.Subscribe()
	defer cancel()
	e.idp.RevokeAll()
	e.clock.Advance(2 * time.Hour)

	_, err := e.b.Token(ctx, testProfile, IDToken, time.Minute)
	var sre *SignInRequiredError
	if !errors.As(err, &sre) || sre.Profile != testProfile {
		t.Fatalf("Token = %v (%T), want *SignInRequiredError for %s", err, err, testProfile)
	}
	if !errors.Is(err, ErrSignInRequired) {
		t.Fatal("errors.Is(err, ErrSignInRequired) is false")
	}
	assertContains(t, err, "gatepass login --profile "+testProfile, "revoked")
	assertNoTokenText(t, err)
	st, _ := e.b.Status(testProfile)
	if st.State != StateSignInRequired || st.Reason == "" {
		t.Fatalf("status %s (%q), want sign-in-required with a reason", st.State, st.Reason)
	}
	ev := waitEvent(t, ch, StateSignInRequired)
	if ev.Status.Profile != testProfile || ev.Status.Reason == "" {
		t.Fatalf("event %+v, want profile %s with a reason", ev.Status, testProfile)
	}
	// The entry stays (sign-in again replaces it) and the agent does not
	// keep refreshing a dead token.
	if _, ok := e.entry(); !ok {
		t.Fatal("invalid_grant deleted the keychain entry")
	}
	n := e.tr.count("/token")
	e.clock.Advance(time.Hour)
	e.b.Tick(ctx)
	if got := e.tr.count("/token"); got != n {
		t.Fatalf("Tick refreshed a sign-in-required profile (%d -> %d requests)", n, got)
	}
	// Nor does Token: the dead refresh token is not sent again.
	for range 5 {
		if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); !errors.Is(err, ErrSignInRequired) {
			t.Fatalf("Token after invalid_grant = %v, want sign-in required", err)
		}
	}
	if got := e.tr.count("/token"); got != n {
		t.Fatalf("Token re-sent a refused refresh token (%d -> %d requests)", n, got)
	}
	// The refusal is in the keychain: a new process (`gatepass status`, a
	// token call, an agent started later) knows it without asking the issuer.
	if stored, _ := e.entry(); stored == nil || !strings.Contains(stored.Refused, "no longer accepts") {
		t.Fatalf("keychain entry after invalid_grant: %v, want the refusal recorded", stored)
	}
	later := e.newBroker()
	if st, _ := later.Status(testProfile); st.State != StateSignInRequired || !strings.Contains(st.Reason, "no longer accepts") {
		t.Fatalf("a new process's status after invalid_grant: %s %q, want sign-in-required with the reason", st.State, st.Reason)
	}
	if _, err := later.Token(ctx, testProfile, IDToken, time.Minute); !errors.Is(err, ErrSignInRequired) || !strings.Contains(err.Error(), "no longer accepts") {
		t.Fatalf("a new process's Token after invalid_grant = %v, want sign-in required with the reason", err)
	}
	if got := e.tr.count("/token"); got != n {
		t.Fatalf("a new process re-sent a refused refresh token (%d -> %d requests)", n, got)
	}
	// A sign-in by another process stores a new token, which this one uses.
	other := e.newBroker()
	if _, err := other.Login(ctx, testProfile, LoginOptions{Browser: newDemoBrowser(true), Timeout: 10 * time.Second}); err != nil {
		t.Fatalf("Login in another process: %v", err)
	}
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); err != nil {
		t.Fatalf("Token after another process signed in: %v", err)
	}
	e.idp.RevokeAll()
	e.clock.Advance(2 * time.Hour)
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); !errors.Is(err, ErrSignInRequired) {
		t.Fatalf("Token after the second revocation = %v, want sign-in required", err)
	}
	// Signing in again here recovers too.
	e.login()
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); err != nil {
		t.Fatalf("Token after signing in again: %v", err)
	}
}

func TestTokenTransientFailureBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	ctx := context.Background()
	e.login()
	e.clock.Advance(2 * time.Hour)
	e.idp.FailNext("token", http.StatusServiceUnavailable, "text/html", "<html><body>Service Unavailable ya29.leak 1//leak eyJleak</body></html>")
	e.idp.FailNext("token", http.StatusInternalServerError, "application/json", `{"access_token":"ya29.leak2"}`)

	base := e.tr.count("/token")
	_, err := e.b.Token(ctx, testProfile, IDToken, time.Minute)
	var re *RefreshError
	var ie *IssuerError
	if !errors.As(err, &re) || !errors.As(err, &ie) {
		t.Fatalf("Token = %v (%T), want *RefreshError wrapping *IssuerError", err, err)
	}
	if errors.Is(err, ErrSignInRequired) {
		t.Fatal("a 503 must not mean sign-in required")
	}
	assertContains(t, err, "HTTP 503", "retry later")
	assertNoTokenText(t, err)
	if got := e.tr.count("/token"); got != base+1 {
		t.Fatalf("token requests %d, want %d", got, base+1)
	}
	if st, _ := e.b.Status(testProfile); st.State != StateSignedIn || !strings.Contains(st.Reason, "503") {
		t.Fatalf("status %s (%q), want signed-in with the failure as reason", st.State, st.Reason)
	}

	// Within the 5s backoff: no request, the last error with the retry time.
	e.clock.Advance(4 * time.Second)
	_, err = e.b.Token(ctx, testProfile, IDToken, time.Minute)
	assertContains(t, err, "HTTP 503", "next retry in")
	if got := e.tr.count("/token"); got != base+1 {
		t.Fatalf("token requested within the backoff (%d requests)", got)
	}
	e.b.Tick(ctx)
	if got := e.tr.count("/token"); got != base+1 {
		t.Fatalf("Tick refreshed within the backoff (%d requests)", got)
	}

	// After it: asked again, fails again (500), backoff doubles to 10s.
	e.clock.Advance(2 * time.Second)
	_, err = e.b.Token(ctx, testProfile, IDToken, time.Minute)
	assertContains(t, err, "HTTP 500")
	assertNoTokenText(t, err)
	if got := e.tr.count("/token"); got != base+2 {
		t.Fatalf("token requests %d after the backoff, want %d", got, base+2)
	}
	e.clock.Advance(6 * time.Second)
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); err == nil || e.tr.count("/token") != base+2 {
		t.Fatalf("6s into a 10s backoff: err %v, requests %d; want the cached error and no request", err, e.tr.count("/token"))
	}
	e.clock.Advance(5 * time.Second)
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); err != nil {
		t.Fatalf("after the second backoff: %v", err)
	}
	if got := e.tr.count("/token"); got != base+3 {
		t.Fatalf("token requests %d, want %d", got, base+3)
	}
	if st, _ := e.b.Status(testProfile); st.State != StateSignedIn || st.Reason != "" {
		t.Fatalf("status %s (%q) after recovery, want signed-in with no reason", st.State, st.Reason)
	}
}

func TestTokenNotSignedIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	_, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute)
	if !errors.Is(err, ErrSignInRequired) {
		t.Fatalf("Token = %v, want sign-in required", err)
	}
	if got := e.tr.count("/token"); got != 0 {
		t.Fatalf("token endpoint asked %d times without a sign-in", got)
	}
	if _, err := e.b.Token(context.Background(), "nope", IDToken, time.Minute); err == nil || !strings.Contains(err.Error(), "unknown profile") {
		t.Fatalf("unknown profile: %v", err)
	}
}

func TestTokenOtherClientEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	e.cfg.Profiles[0].ClientID = "another-client"
	_, err := e.newBroker().Token(context.Background(), testProfile, IDToken, time.Minute)
	if !errors.Is(err, ErrSignInRequired) {
		t.Fatalf("Token with a changed client_id = %v, want sign-in required", err)
	}
	if got := e.idp.Stats().Refreshes; got != 0 {
		t.Fatalf("refreshed %d times with another client's refresh token", got)
	}
}

func TestAgentTick(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	agent := e.newBroker()
	ctx := startAgent(t, agent)
	// Start fetches fresh tokens at once; Tick waits for a refresh in flight.
	agent.Tick(ctx)
	if got := e.idp.Stats().Refreshes; got != 1 {
		t.Fatalf("refreshes after Start = %d, want 1", got)
	}
	if st, _ := agent.Status(testProfile); st.State != StateSignedIn || st.Email != "dev@example.test" {
		t.Fatalf("agent status %+v, want signed-in as dev@example.test", st)
	}
	issued := e.clock.Now()

	e.clock.Advance(47 * time.Minute) // before 80% of one hour
	agent.Tick(ctx)
	if got := e.idp.Stats().Refreshes; got != 1 {
		t.Fatalf("refreshes at 47m = %d, want 1", got)
	}
	e.clock.Advance(2 * time.Minute) // past 80%
	agent.Tick(ctx)
	if got := e.idp.Stats().Refreshes; got != 2 {
		t.Fatalf("refreshes at 49m = %d, want 2", got)
	}
	st, _ := agent.Status(testProfile)
	if want := issued.Add(49*time.Minute + time.Hour); st.Expiry.Before(want.Add(-time.Second)) {
		t.Fatalf("expiry after the refresh %v, want about %v", st.Expiry, want)
	}
	agent.Tick(ctx)
	if got := e.idp.Stats().Refreshes; got != 2 {
		t.Fatalf("a second Tick at the same time refreshed again (%d)", got)
	}

	// The laptop sleeps for three hours: the first Tick after waking refreshes.
	e.clock.Advance(3 * time.Hour)
	agent.Tick(ctx)
	if got := e.idp.Stats().Refreshes; got != 3 {
		t.Fatalf("refreshes after a 3h clock jump = %d, want 3", got)
	}
	tok, err := agent.Token(ctx, testProfile, IDToken, time.Minute)
	if err != nil || !tok.Expiry.After(e.clock.Now().Add(50*time.Minute)) {
		t.Fatalf("Token after the jump: expiry %v, %v; want a fresh token", tok.Expiry, err)
	}
	if got := e.idp.Stats().Refreshes; got != 3 {
		t.Fatalf("Token after the jump refreshed again (%d)", got)
	}
}

func TestAgentTickSkipsSignedOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	ctx := startAgent(t, e.b)
	e.b.Tick(ctx)
	e.clock.Advance(3 * time.Hour)
	e.b.Tick(ctx)
	if got := e.tr.count("/token") + e.tr.count("/.well-known/openid-configuration"); got != 0 {
		t.Fatalf("a signed-out profile caused %d issuer requests", got)
	}
	if st, _ := e.b.Status(testProfile); st.State != StateSignedOut {
		t.Fatalf("state %s, want signed-out", st.State)
	}
}

func TestAgentStartKeychainError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	agent, ch := e.signedInAgent()
	e.kc.FailNext("get", errors.New("keychain is locked"))
	ctx := startAgent(t, agent)
	ev := waitEvent(t, ch, StateUnknown) // not signed-out: the keychain did not say
	if !strings.Contains(ev.Status.Reason, "keychain is locked") {
		t.Fatalf("event reason %q, want the keychain error", ev.Status.Reason)
	}
	// Once the keychain answers again, the next request reads it and goes on.
	if _, err := agent.Token(ctx, testProfile, IDToken, time.Minute); err != nil {
		t.Fatalf("Token after the keychain is back: %v", err)
	}
	if st, _ := agent.Status(testProfile); st.State != StateSignedIn {
		t.Errorf("state after the keychain is back: %s %q, want signed-in", st.State, st.Reason)
	}
}

// TestStartDoesNotWaitForKeychain: Start returns while the keychain hangs (the
// window opens at once); callers meanwhile share the one read in flight, and
// get the profile's real state when it answers.
func TestStartDoesNotWaitForKeychain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	agent, ch := e.signedInAgent()
	release := e.kc.BlockGets()
	defer release()
	before := e.kc.Gets()
	started := make(chan struct{})
	go func() { startAgent(t, agent); close(started) }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("Start waited for a hung keychain")
	}
	var wg sync.WaitGroup
	sts := make([]ProfileStatus, 4)
	for i := range sts {
		wg.Add(1)
		go func() { defer wg.Done(); sts[i], _ = agent.Status(testProfile) }()
	}
	for deadline := time.Now().Add(10 * time.Second); e.kc.Gets()-before < 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Start did not read the keychain")
		}
	}
	time.Sleep(50 * time.Millisecond) // let the Status calls arrive and wait
	// Counted while the keychain hangs (a Get counts as it begins): after the
	// release, the agent's first refresh reads the entry again, as it should.
	if n := e.kc.Gets() - before; n != 1 {
		t.Errorf("%d keychain reads for Start and 4 Status calls during one hang, want 1", n)
	}
	release()
	wg.Wait()
	for i, st := range sts {
		if st.State != StateSignedIn {
			t.Errorf("Status %d during the hang returned %s (%s), want signed-in once read", i, st.State, st.Reason)
		}
	}
	waitEvent(t, ch, StateSignedIn)
}

func TestStatusReadsKeychainWithoutNetwork(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	before := e.tr.count("/token") + e.tr.count("/.well-known/openid-configuration")
	sts := e.newBroker().Statuses()
	if len(sts) != 1 || sts[0].State != StateSignedIn || sts[0].Email != "dev@example.test" || sts[0].Subject == "" {
		t.Fatalf("Statuses = %+v, want one signed-in profile with email and subject", sts)
	}
	if after := e.tr.count("/token") + e.tr.count("/.well-known/openid-configuration"); after != before {
		t.Fatal("Status talked to the issuer")
	}
	if _, err := e.b.Status("nope"); err == nil {
		t.Fatal("Status of an unknown profile succeeded")
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		signIn      bool
		setup       func(e *testEnv)
		want        LogoutResult
		wantRevokes int
		wantErr     bool
	}{
		"revokes and deletes": {
			signIn: true, want: LogoutResult{WasSignedIn: true, Revoked: true}, wantRevokes: 1,
		},
		"revoke endpoint fails": {
			signIn: true,
			setup: func(e *testEnv) {
				e.idp.FailNext("revoke", http.StatusInternalServerError, "text/plain", "boom 1//leak")
			},
			want:    LogoutResult{WasSignedIn: true, Revoked: false},
			wantErr: true,
		},
		// Google answers 400 invalid_token for a token it already revoked (RFC 7009
		// wants 200): the sign-out is complete, not a failure to report.
		"token already revoked at the issuer": {
			signIn: true,
			setup:  func(e *testEnv) { e.idp.RevokeAll() },
			want:   LogoutResult{WasSignedIn: true, Revoked: true, AlreadyInvalid: true},
		},
		"revoke endpoint answers 400 with another error": {
			signIn: true,
			setup: func(e *testEnv) {
				e.idp.FailNext("revoke", http.StatusBadRequest, "application/json", `{"error":"invalid_request"}`)
			},
			want:    LogoutResult{WasSignedIn: true, Revoked: false},
			wantErr: true,
		},
		"not signed in": {
			want: LogoutResult{},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, demo.Options{})
			if tc.signIn {
				e.login()
			}
			if tc.setup != nil {
				tc.setup(e)
			}
			ch, cancel := e.b.Subscribe()
			defer cancel()
			res, err := e.b.Logout(context.Background(), testProfile)
			if res != tc.want {
				t.Errorf("Logout = %+v, want %+v", res, tc.want)
			}
			if tc.wantErr {
				var re *RevokeError
				if !errors.As(err, &re) || re.Profile != testProfile {
					t.Fatalf("err = %v (%T), want *RevokeError", err, err)
				}
				assertContains(t, err, "signed out locally", "revoke it")
				assertNoTokenText(t, err)
			} else if err != nil {
				t.Fatalf("Logout: %v", err)
			}
			if got := e.idp.Stats().Revocations; got != tc.wantRevokes {
				t.Errorf("revocations = %d, want %d", got, tc.wantRevokes)
			}
			if _, ok := e.entry(); ok {
				t.Error("keychain entry still there")
			}
			st, _ := e.b.Status(testProfile)
			if st.State != StateSignedOut || st.Email != "" {
				t.Errorf("status %s %q, want signed-out without email", st.State, st.Email)
			}
			waitEvent(t, ch, StateSignedOut)
			if _, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute); !errors.Is(err, ErrSignInRequired) {
				t.Errorf("Token after logout = %v, want sign-in required", err)
			}
		})
	}
}

func TestLogoutKeychainDeleteFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	e.kc.FailNext("delete", errors.New("keychain is locked"))
	res, err := e.b.Logout(context.Background(), testProfile)
	assertContains(t, err, "delete the keychain entry", "keychain is locked")
	if !res.WasSignedIn {
		t.Fatalf("Logout = %+v, want WasSignedIn", res)
	}
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	ch, cancel := e.b.Subscribe()
	ch2, cancel2 := e.b.Subscribe()
	defer cancel2()
	e.login()
	waitEvent(t, ch, StateSigningIn)
	ev := waitEvent(t, ch, StateSignedIn)
	if ev.Status.Email != "dev@example.test" || ev.Status.Profile != testProfile {
		t.Fatalf("signed-in event %+v, want the profile and email", ev.Status)
	}
	waitEvent(t, ch2, StateSignedIn)

	cancel()
	cancel() // twice is harmless
	timeout := time.After(5 * time.Second)
	for closed := false; !closed; {
		select {
		case _, ok := <-ch:
			closed = !ok
		case <-timeout:
			t.Fatal("cancel did not close the channel")
		}
	}
	// Publishing after cancel reaches the other subscriber only (and does
	// not panic on the closed channel).
	e.clock.Advance(2 * time.Hour)
	if _, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ch2, StateRefreshing)
	waitEvent(t, ch2, StateSignedIn)
}

func TestSubscribeSlowSubscriberDoesNotBlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	slow, cancelSlow := e.b.Subscribe() // never read until the end
	defer cancelSlow()

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 500 {
			e.b.publish(ProfileStatus{Profile: fmt.Sprint(i), State: StateRefreshing})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publish blocked on a subscriber that does not read")
	}
	if n := len(slow); n != cap(slow) {
		t.Fatalf("slow subscriber holds %d events, want a full buffer of %d", n, cap(slow))
	}
	// Real work still completes with a full subscriber.
	loggedIn := make(chan error, 1)
	go func() {
		_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: newDemoBrowser(true), Timeout: 10 * time.Second})
		loggedIn <- err
	}()
	select {
	case err := <-loggedIn:
		if err != nil {
			t.Fatalf("Login: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Login blocked on a subscriber that does not read")
	}
	if ev := <-slow; ev.Status.Profile != "0" {
		t.Fatalf("first buffered event %+v, want the oldest one", ev.Status)
	}
}

// TestTokenForHostInjectsTheProfilesKind: the token a gateway gets is the kind its
// profile's inject names, or its override's, and a host no profile lists gets none.
func TestTokenForHostInjectsTheProfilesKind(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.cfg.Profiles[0].Gateways = mustPatterns(t, "api.team.example", "*.gw.team.example")
	ctx := context.Background()
	e.login()
	id, err := e.b.Token(ctx, testProfile, IDToken, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := e.b.Token(ctx, testProfile, AccessToken, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, inject := range []TokenKind{IDToken, AccessToken} {
		e.cfg.Profiles[0].Inject = inject
		want := map[TokenKind]string{IDToken: id.Value, AccessToken: acc.Value}[inject]
		for _, hp := range [][2]string{{"api.team.example", "443"}, {"a.gw.team.example", "443"}} {
			tok, p, err := e.b.TokenForHost(ctx, hp[0], hp[1])
			if err != nil || p == nil || p.Name != testProfile {
				t.Fatalf("inject %s, %s: profile %v, %v", inject, hp[0], p, err)
			}
			if tok.Value != want || tok.Kind != inject {
				t.Errorf("inject %s, %s: got a %s %s, want the profile's %s", inject, hp[0], tok.Kind, Redacted(tok.Value), inject)
			}
		}
	}
	// A gateway's override: the other kind for that gateway only, from the same
	// sign-in (no second login, no extra refresh).
	e.cfg.Profiles[0].Inject = IDToken
	e.cfg.Profiles[0].Overrides = map[Pattern]Override{mustPatterns(t, "api.team.example")[0]: {Inject: AccessToken}}
	refreshes := e.idp.Stats().Refreshes
	if tok, _, err := e.b.TokenForHost(ctx, "api.team.example", "443"); err != nil || tok.Value != acc.Value || tok.Kind != AccessToken {
		t.Errorf("overridden gateway: got a %s %s, %v; want the access token", tok.Kind, Redacted(tok.Value), err)
	}
	if tok, _, err := e.b.TokenForHost(ctx, "a.gw.team.example", "443"); err != nil || tok.Value != id.Value {
		t.Errorf("the profile's other gateway: got a %s %s, %v; want the ID token", tok.Kind, Redacted(tok.Value), err)
	}
	if n := e.idp.Stats().Refreshes; n != refreshes {
		t.Errorf("the override cost %d refreshes", n-refreshes)
	}
	// The header the gateway takes it in comes with the token.
	e.cfg.Profiles[0].Overrides[mustPatterns(t, "api.team.example")[0]] = Override{Header: HeaderProxyAuthorization}
	for host, want := range map[string]string{"api.team.example": HeaderProxyAuthorization, "a.gw.team.example": HeaderAuthorization} {
		if tok, _, err := e.b.TokenForHost(ctx, host, "443"); err != nil || tok.Header != want {
			t.Errorf("%s: header %q, %v; want %s", host, tok.Header, err, want)
		}
	}
	for _, hp := range [][2]string{{"evil.example", "443"}, {"api.team.example", "8443"}, {"gw.team.example", "443"}} {
		if tok, _, err := e.b.TokenForHost(ctx, hp[0], hp[1]); err == nil || tok.Value != "" || !strings.Contains(err.Error(), "not a configured gateway") {
			t.Errorf("%s:%s is no gateway: got %s, %v", hp[0], hp[1], Redacted(tok.Value), err)
		}
	}
}

// TestTokenForHostShortLivedTokens: with an issuer whose tokens live a minute or less,
// the proxy's margin shrinks to a quarter of the lifetime, so a request does not spend
// a refresh and still fail. `gatepass token --min-ttl` keeps its exact meaning.
func TestTokenForHostShortLivedTokens(t *testing.T) {
	t.Parallel()
	for _, life := range []time.Duration{time.Minute, 20 * time.Second} {
		t.Run(life.String(), func(t *testing.T) {
			e := newEnv(t, demo.Options{AccessTTL: life, IDTokenTTL: life})
			e.cfg.Profiles[0].Gateways = mustPatterns(t, "api.team.example")
			ctx := context.Background()
			e.login()
			first, _, err := e.b.TokenForHost(ctx, "api.team.example", "443")
			if err != nil {
				t.Fatalf("TokenForHost right after login: %v", err)
			}
			for range 5 {
				if tok, _, err := e.b.TokenForHost(ctx, "api.team.example", "443"); err != nil || tok.Value != first.Value {
					t.Fatalf("TokenForHost again: new token %v, %v", tok.Value != first.Value, err)
				}
			}
			if n := e.idp.Stats().Refreshes; n != 0 {
				t.Fatalf("refreshes = %d with a fresh %s token, want 0", n, life)
			}
			e.clock.Advance(life*3/4 + time.Second) // less than a quarter left
			tok, _, err := e.b.TokenForHost(ctx, "api.team.example", "443")
			if err != nil || tok.Value == first.Value || !tok.Expiry.After(e.clock.Now().Add(life/4)) {
				t.Fatalf("with less than a quarter left: new token %v, expiry %v (now %v), %v", tok.Value != first.Value, tok.Expiry, e.clock.Now(), err)
			}
			if n := e.idp.Stats().Refreshes; n != 1 {
				t.Fatalf("refreshes = %d, want 1", n)
			}
			// FreshToken (`gatepass token` without --min-ttl, Copy token) has the
			// proxy's capped margin: the token just fetched serves, no refresh.
			if fresh, err := e.b.FreshToken(ctx, testProfile, IDToken, DefaultMargin); err != nil || fresh.Value != tok.Value || e.idp.Stats().Refreshes != 1 {
				t.Fatalf("FreshToken with a %s lifetime: %v, refreshes %d, want the current token and still 1", life, err, e.idp.Stats().Refreshes)
			}
			if _, err := e.b.Token(ctx, testProfile, IDToken, DefaultMargin); err == nil || !strings.Contains(err.Error(), "--min-ttl") {
				t.Errorf("Token with the default margin as a demand and a %s lifetime: %v, want the --min-ttl error", life, err)
			}
			if _, err := e.b.Token(ctx, testProfile, IDToken, 2*life); err == nil || !strings.Contains(err.Error(), "--min-ttl") {
				t.Errorf("Token with a min TTL above the lifetime: %v, want the --min-ttl error", err)
			}
		})
	}
}

// assertBacksOff checks that five more requests for api.team.example get the error
// want, with the time of the next retry, without asking the issuer again: the
// refreshes stay at the one that failed.
func assertBacksOff(t *testing.T, e *testEnv, want string) {
	t.Helper()
	for range 5 {
		_, _, err := e.b.TokenForHost(context.Background(), "api.team.example", "443")
		assertContains(t, err, want, "next retry in")
	}
	if n := e.idp.Stats().Refreshes; n != 1 {
		t.Fatalf("refreshes = %d after 5 more requests, want still 1 (backing off)", n)
	}
}

// TestRefreshBringsExpiredAccessToken: an issuer whose answer's expires_in is wrong
// (negative here) hands over an access token that is expired on arrival. The proxy's
// caller is told that the answer, not this machine's clock, is at fault and what to do,
// and the broker backs off instead of refreshing for every request.
func TestRefreshBringsExpiredAccessToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.cfg.Profiles[0].Gateways = mustPatterns(t, "api.team.example")
	e.cfg.Profiles[0].Inject = AccessToken
	ctx := context.Background()
	e.login()
	e.clock.Advance(2 * time.Hour)
	e.idp.Tamper(demo.TamperAccessExpired)
	_, _, err := e.b.TokenForHost(ctx, "api.team.example", "443")
	assertContains(t, err, "access token came already expired", "expires_in", `inject = "id_token"`)
	if strings.Contains(err.Error(), "clock") {
		t.Errorf("message blames a clock: %v", err)
	}
	if n := e.idp.Stats().Refreshes; n != 1 {
		t.Fatalf("refreshes = %d, want 1", n)
	}
	assertBacksOff(t, e, "access token came already expired")
	e.clock.Advance(time.Minute) // past the backoff; the issuer answers well again
	if tok, _, err := e.b.TokenForHost(ctx, "api.team.example", "443"); err != nil || tok.Kind != AccessToken {
		t.Fatalf("after the backoff: %v, %v", tok.Kind, err)
	}
}

// TestRefreshWithoutNewIDToken: an issuer may leave the ID token out of a refresh
// answer (OpenID Connect Core §12.2; Google "usually" sends one). When the ID token
// held is then too old, the caller is told why and what to do, and the broker backs
// off instead of spending a refresh on every request.
func TestRefreshWithoutNewIDToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{NoIDTokenOnRefresh: true})
	e.cfg.Profiles[0].Gateways = mustPatterns(t, "api.team.example")
	ctx := context.Background()
	e.login()
	e.clock.Advance(time.Hour - 30*time.Second) // both tokens have 30 s left
	_, _, err := e.b.TokenForHost(ctx, "api.team.example", "443")
	assertContains(t, err, "returned no new ID token", "gatepass login --profile "+testProfile, `inject = "access_token"`)
	if n := e.idp.Stats().Refreshes; n != 1 {
		t.Fatalf("refreshes = %d, want 1", n)
	}
	assertBacksOff(t, e, "returned no new ID token")
	// The access token of that refresh is fine.
	if acc, err := e.b.Token(ctx, testProfile, AccessToken, time.Minute); err != nil || !acc.Expiry.After(e.clock.Now().Add(50*time.Minute)) {
		t.Errorf("access token after the refresh: expiry %v, %v", acc.Expiry, err)
	}
	st, _ := e.b.Status(testProfile)
	if st.State != StateSignedIn || !strings.Contains(st.Reason, "no new ID token") {
		t.Errorf("status %s %q, want signed in with the reason", st.State, st.Reason)
	}
	e.clock.Advance(10 * time.Second) // past the first backoff
	_, _, err = e.b.TokenForHost(ctx, "api.team.example", "443")
	assertContains(t, err, "returned no new ID token")
	if n := e.idp.Stats().Refreshes; n != 2 {
		t.Errorf("refreshes = %d after the backoff, want 2", n)
	}
	// The agent's schedule follows the new access token, not the expired ID token:
	// ticks for the next ten minutes refresh nothing.
	for range 20 {
		e.clock.Advance(30 * time.Second)
		e.b.Tick(ctx)
	}
	if n := e.idp.Stats().Refreshes; n != 2 {
		t.Errorf("refreshes = %d after 10 minutes of ticks, want still 2", n)
	}
}

// TestSystemClockIsWallClockOnly: with the real clock, the expiries and the refresh
// schedule carry no monotonic reading, so a suspend (which stops Linux's monotonic
// clock) cannot make a token look younger than it is. A time with a monotonic
// reading prints it as "m=±…".
func TestSystemClockIsWallClockOnly(t *testing.T) {
	t.Parallel()
	if s := (SystemClock{}).Now().String(); strings.Contains(s, " m=") {
		t.Fatalf("SystemClock.Now() = %s: carries a monotonic reading", s)
	}
	idp, err := demo.Start("127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	e := &testEnv{t: t, idp: idp, kc: &FakeKeychain{}, lockDir: t.TempDir(), cfg: &Config{Listen: DefaultListen, Profiles: []*Profile{{
		Name: testProfile, Issuer: idp.Issuer(), ClientID: idp.ClientID(), ClientSecret: idp.ClientSecret(),
		Scopes: []string{"openid", "email"}, Inject: IDToken,
	}}}}
	if e.b, err = New(e.cfg, Deps{Keychain: e.kc, LockDir: e.lockDir}); err != nil {
		t.Fatal(err)
	}
	e.login()
	ctx := context.Background()
	for _, kind := range []TokenKind{IDToken, AccessToken} {
		tok, err := e.b.Token(ctx, testProfile, kind, time.Minute)
		if err != nil || strings.Contains(tok.Expiry.String(), " m=") {
			t.Errorf("%s expiry %s, %v: want a wall-clock time", kind, tok.Expiry, err)
		}
	}
	s, _ := e.b.session(testProfile)
	s.mu.Lock()
	due := s.due
	s.mu.Unlock()
	if due.IsZero() || strings.Contains(due.String(), " m=") {
		t.Errorf("refresh due %s: want a wall-clock time", due)
	}
}

// slowTokenAnswers lets the issuer answer a token request (and rotate), then holds
// the answer for 300 ms unless the request's context ends first: a slow network.
type slowTokenAnswers struct{ base http.RoundTripper }

func (s slowTokenAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/token") {
		return resp, err
	}
	select {
	case <-time.After(300 * time.Millisecond):
		return resp, nil
	case <-r.Context().Done():
		resp.Body.Close()
		return nil, r.Context().Err()
	}
}

// TestRefreshOutlivesAnImpatientCaller: with rotation, a caller that stops waiting
// (a proxied client hanging up) must not drop the issuer's answer, which carries the
// only valid refresh token; the next caller still gets a token.
func TestRefreshOutlivesAnImpatientCaller(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{RotateRefreshTokens: true, DetectReuse: true})
	e.login()
	e.client.Transport = slowTokenAnswers{e.tr}
	e.b = e.newBroker()
	e.clock.Advance(2 * time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, _ = e.b.Token(ctx, testProfile, IDToken, time.Minute)
	cancel()
	tok, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute)
	if err != nil || tok.Value == "" {
		t.Fatalf("the next caller: %v (issuer's invalid_grants: %d)", err, e.idp.Stats().InvalidGrants)
	}
	if n := e.idp.Stats().InvalidGrants; n != 0 {
		t.Errorf("invalid_grants = %d, want 0", n)
	}
}

// TestStoredSignInOfAnotherConfig: the keychain account is the profile's name, so a
// second config with a profile of that name but another issuer finds the first one's
// sign-in. Its status says so at once (not "signed in" until the first refresh), and
// its token request names the cause.
func TestStoredSignInOfAnotherConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	other := newEnv(t, demo.Options{ClientID: "other-client"})
	b2, err := New(other.cfg, Deps{Keychain: e.kc, Clock: e.clock, HTTPClient: other.client, LockDir: t.TempDir(), Jitter: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := b2.Status(testProfile)
	if st.State != StateSignInRequired || !strings.Contains(st.Reason, "another issuer or client ID") || !strings.Contains(st.Reason, e.idp.Issuer()) {
		t.Errorf("status: %s (%q), want sign-in required naming the stored sign-in's issuer %s", st.State, st.Reason, e.idp.Issuer())
	}
	_, err = b2.Token(context.Background(), testProfile, IDToken, time.Minute)
	if !errors.Is(err, ErrSignInRequired) || !strings.Contains(err.Error(), "another config has a profile of this name") {
		t.Errorf("Token: %v, want sign-in required with the cause", err)
	}
	if n := other.idp.Stats().Refreshes + e.idp.Stats().Refreshes; n != 0 {
		t.Errorf("%d refreshes with another config's refresh token, want 0", n)
	}
}

// heldTokenAnswers holds every token answer until the request's context ends: an
// issuer (or a network) that never finishes answering.
type heldTokenAnswers struct{ base http.RoundTripper }

func (h heldTokenAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(r.URL.Path, "/token") {
		return h.base.RoundTrip(r)
	}
	<-r.Context().Done()
	return nil, r.Context().Err()
}

// TestRefreshGrantIsBounded: the grant outlives its caller (above), so it needs a
// bound of its own. Against an issuer that never answers, with an HTTP client that
// has no timeout either, the refresh ends with an error that says what to check,
// the broker backs off, and once the issuer answers again the next refresh works.
func TestRefreshGrantIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	e.client.Transport = heldTokenAnswers{e.tr}
	e.client.Timeout = 0
	e.b = e.newBroker()
	e.b.grantTimeout = 200 * time.Millisecond
	e.clock.Advance(2 * time.Hour)

	type result struct {
		tok Token
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		tok, err := e.b.Token(ctx, testProfile, IDToken, time.Minute)
		done <- result{tok, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Token still waits on an issuer that never answers: the refresh grant has no bound")
	}
	var re *RefreshError
	if !errors.As(r.err, &re) || !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a *RefreshError for the deadline", r.err)
	}
	if msg := r.err.Error(); !strings.Contains(msg, "is the issuer reachable from here?") {
		t.Errorf("message %q does not say what to check", msg)
	}
	if st, _ := e.b.Status(testProfile); st.State != StateSignedIn || st.Reason == "" {
		t.Errorf("status after the timeout: state %v, reason %q; want signed in, with the error", st.State, st.Reason)
	}

	// While the backoff runs, callers get the same error without asking the issuer.
	before := e.tr.count("/token")
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); err == nil {
		t.Fatal("a caller during the backoff got a token from an issuer that never answered")
	}
	if n := e.tr.count("/token") - before; n != 0 {
		t.Errorf("%d token requests during the backoff, want 0", n)
	}

	e.client.Transport = e.tr
	e.clock.Advance(10 * time.Minute)
	if tok, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); err != nil || tok.Value == "" {
		t.Fatalf("after the issuer answers again: %v", err)
	}
}

// lockingKeychain fails every read while locked, as a locked gnome-keyring or macOS
// keychain does (on a desktop each read may also prompt to unlock).
type lockingKeychain struct {
	*FakeKeychain
	mu     sync.Mutex
	locked bool
	gets   int
}

func (k *lockingKeychain) Get(s, a string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.locked {
		k.gets++
		return "", &KeychainError{Op: "read", Account: a, Kind: KeychainLocked}
	}
	return k.FakeKeychain.Get(s, a)
}

// TestLockedKeychainBacksOff: while the keychain is locked, the broker backs off
// as after a failed refresh instead of reading it for every tick and request.
func TestLockedKeychainBacksOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	kc := &lockingKeychain{FakeKeychain: e.kc}
	b, err := New(e.cfg, Deps{Keychain: kc, Clock: e.clock, HTTPClient: e.client, LockDir: e.lockDir, Jitter: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	e.b = b
	e.login()
	ctx := context.Background()
	kc.mu.Lock()
	kc.locked = true
	kc.mu.Unlock()
	e.clock.Advance(2 * time.Hour) // the tokens expired meanwhile
	var last error
	for range 12 { // a minute of ticks, 5 s apart, with requests in between
		b.Tick(ctx)
		for range 5 {
			_, last = b.Token(ctx, testProfile, IDToken, time.Minute)
		}
		e.clock.Advance(5 * time.Second)
	}
	kc.mu.Lock()
	gets := kc.gets
	kc.mu.Unlock()
	if gets > 4 { // backoff 5 s, 10 s, 20 s, 40 s
		t.Errorf("the locked keychain was read %d times in a minute, want at most 4", gets)
	}
	assertContains(t, last, "locked")
	kc.mu.Lock()
	kc.locked = false
	kc.mu.Unlock()
	e.clock.Advance(5 * time.Minute)
	if _, err := b.Token(ctx, testProfile, IDToken, time.Minute); err != nil {
		t.Errorf("after unlocking: %v", err)
	}
}

// TestLogoutCorruptEntry: a half-written or foreign keychain entry is deleted; the
// message says the token could not be revoked and where to revoke it, and does not
// send the user back to `gatepass logout`.
func TestLogoutCorruptEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	if err := e.kc.Set(KeychainService, testProfile, "{half-written"); err != nil {
		t.Fatal(err)
	}
	res, err := e.b.Logout(context.Background(), testProfile)
	if _, ok := e.kc.Peek(KeychainService, testProfile); ok {
		t.Error("the corrupt entry is still there")
	}
	var re *RevokeError
	if !errors.As(err, &re) || res != (LogoutResult{WasSignedIn: true}) {
		t.Fatalf("Logout = %+v, %v; want a RevokeError", res, err)
	}
	assertContains(t, err, "signed out locally", "unreadable", "security settings")
	if strings.Contains(err.Error(), "gatepass logout") {
		t.Errorf("the message sends the user back to logout: %v", err)
	}
}

// TestRefreshNamesAnotherUser: a refreshed ID token for another user than the stored
// sign-in is not used, and the message says what to do.
func TestRefreshNamesAnotherUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	e.idp.Tamper(demo.TamperOtherSubject)
	e.clock.Advance(2 * time.Hour)
	tok, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute)
	assertContains(t, err, "different user", "gatepass logout --profile "+testProfile)
	if tok.Value != "" {
		t.Errorf("a token was handed out: %s", Redacted(tok.Value))
	}
}

// TestSignInRequiredReasons: the issuer's refusal of the refresh token becomes a
// sign-in-required state whose reason carries the issuer's description and, for
// Google, the 7-day rule of apps in Testing; invalid_rapt names reauthentication.
func TestSignInRequiredReasons(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		google bool
		body   string
		want   []string
		not    string
	}{
		"google invalid_grant": {true, `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`,
			[]string{"Token has been expired or revoked.", "Testing", "7 days", "In production"}, ""},
		"google invalid_rapt": {true, `{"error":"invalid_rapt","error_description":"reauth related error (invalid_rapt)"}`,
			[]string{"reauthentication", "reauth related error"}, "7 days"},
		"other issuer invalid_grant": {false, `{"error":"invalid_grant","error_description":"Refresh token expired\u0007"}`,
			[]string{"expired or revoked", "Refresh token expired"}, "7 days"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, demo.Options{GoogleRules: tc.google})
			if tc.google {
				googleRulesIssuers.Store(e.idp.Issuer(), true)
				t.Cleanup(func() { googleRulesIssuers.Delete(e.idp.Issuer()) })
			}
			e.login()
			e.idp.FailNext("token", http.StatusBadRequest, "application/json", tc.body)
			e.clock.Advance(2 * time.Hour)
			_, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute)
			if !errors.Is(err, ErrSignInRequired) {
				t.Fatalf("err = %v, want sign-in required", err)
			}
			st, _ := e.b.Status(testProfile)
			for _, w := range tc.want {
				if !strings.Contains(st.Reason, w) {
					t.Errorf("reason %q lacks %q", st.Reason, w)
				}
			}
			if tc.not != "" && strings.Contains(st.Reason, tc.not) {
				t.Errorf("reason %q says %q", st.Reason, tc.not)
			}
			if strings.ContainsRune(st.Reason, '\a') {
				t.Errorf("reason %q keeps a control character", st.Reason)
			}
		})
	}
}

// TestBackgroundRequestsNeverOpenABrowser: when the issuer ends the sign-in, the
// token lookups of the proxy and the CLI answer sign-in required at once, and no
// browser opens (LESSONS: browser-tab explosions); only `login` opens one.
func TestBackgroundRequestsNeverOpenABrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.cfg.Profiles[0].Gateways = mustPatterns(t, "api.team.example")
	e.login()
	br := &urlBrowser{urls: make(chan string, 100)}
	b, err := New(e.cfg, Deps{Keychain: e.kc, Clock: e.clock, HTTPClient: e.client, LockDir: e.lockDir, Browser: br})
	if err != nil {
		t.Fatal(err)
	}
	e.idp.RevokeAll()
	e.clock.Advance(2 * time.Hour)
	ctx := context.Background()
	for range 20 {
		if _, _, err := b.TokenForHost(ctx, "api.team.example", "443"); !errors.Is(err, ErrSignInRequired) {
			t.Fatalf("TokenForHost: %v, want sign-in required", err)
		}
		if _, err := b.Token(ctx, testProfile, AccessToken, time.Minute); !errors.Is(err, ErrSignInRequired) {
			t.Fatalf("Token: %v, want sign-in required", err)
		}
		b.Tick(ctx)
	}
	if n := len(br.urls); n != 0 {
		t.Errorf("%d browser windows opened for background requests", n)
	}
	if n := e.idp.Stats().Refreshes; n > 1 {
		t.Errorf("the dead refresh token was sent %d times, want once", n)
	}
}

// TestControlSocket: the agent's control socket is the user's only (0600 in a 0700
// directory), refuses a second agent, and tells clients where the proxy listens.
// controlSocketPath is a control socket path in a directory of its own, short
// (Unix socket paths are limited), removed when the test ends.
func controlSocketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gp-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "gatepass", "agent.sock")
}

// serveControl serves b's control socket, at a path of its own, until the test
// ends, and returns a client of it and the test's context.
func serveControl(t *testing.T, b *Broker) (AgentClient, context.Context) {
	t.Helper()
	path := controlSocketPath(t)
	ctx := t.Context()
	if err := ServeControl(ctx, b, path); err != nil {
		t.Fatal(err)
	}
	return AgentClient{Path: path}, ctx
}

func TestControlSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	path := controlSocketPath(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := ServeControl(ctx, e.b, path); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	if err := ServeControl(ctx, e.b, path); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second agent on the same socket: %v", err)
	}
	c := AgentClient{Path: path}
	if addr, alive := c.Proxy(ctx); !alive || addr != "" {
		t.Errorf("Proxy before the proxy runs = %q, %v; want no address from a live agent", addr, alive)
	}
	e.b.SetProxyAddr(func() string { return "127.0.0.1:9999" })
	if addr, alive := c.Proxy(ctx); !alive || addr != "127.0.0.1:9999" {
		t.Errorf("Proxy = %q, %v; want 127.0.0.1:9999", addr, alive)
	}
	if addr, alive := (AgentClient{Path: path + ".none"}).Proxy(ctx); alive || addr != "" {
		t.Errorf("Proxy with no agent = %q, %v", addr, alive)
	}
	// A second `gatepass` asks for the window: a headless agent says it has none.
	if err := c.ShowWindow(ctx); err == nil || !strings.Contains(err.Error(), "`gatepass proxy`") || !strings.Contains(err.Error(), "no window") {
		t.Errorf("ShowWindow on a headless agent: %v", err)
	}
	shown := 0
	e.b.SetShowWindow(func() { shown++ })
	if err := c.ShowWindow(ctx); err != nil || shown != 1 {
		t.Errorf("ShowWindow: %v, shown %d times; want once", err, shown)
	}
}

// TestGoogleTestingAppSevenDays: Google ends the refresh tokens of an app whose
// consent screen is in Testing after 7 days (the demo's RefreshTTL). The agent,
// refreshing on schedule all week, then says sign-in required and why.
func TestGoogleTestingAppSevenDays(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{GoogleRules: true, RefreshTTL: 7 * 24 * time.Hour})
	googleRulesIssuers.Store(e.idp.Issuer(), true)
	t.Cleanup(func() { googleRulesIssuers.Delete(e.idp.Issuer()) })
	e.login()
	ctx := context.Background()
	for day := range 8 {
		e.clock.Advance(24 * time.Hour)
		_, err := e.b.Token(ctx, testProfile, IDToken, time.Minute)
		if day < 6 && err != nil {
			t.Fatalf("day %d: %v", day+1, err)
		}
		if day >= 7 && !errors.Is(err, ErrSignInRequired) {
			t.Fatalf("day %d: %v, want sign-in required", day+1, err)
		}
	}
	st, _ := e.b.Status(testProfile)
	if st.State != StateSignInRequired || !strings.Contains(st.Reason, "Testing") || !strings.Contains(st.Reason, "7 days") {
		t.Errorf("status %s %q, want sign-in required naming the Testing rule", st.State, st.Reason)
	}
}

// TestControlSocketFreshToken: through the agent, FreshToken keeps its capped
// margin and Token its exact one, as in-process (`gatepass token` asks the agent).
func TestControlSocketFreshToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{AccessTTL: time.Minute, IDTokenTTL: time.Minute})
	c, ctx := serveControl(t, e.b)
	e.login()
	tok, err := c.FreshToken(ctx, testProfile, AccessToken, DefaultMargin)
	if err != nil || tok.Value == "" {
		t.Fatalf("agent FreshToken with 1-minute tokens: %v", err)
	}
	if again, err := c.FreshToken(ctx, testProfile, AccessToken, DefaultMargin); err != nil || again.Value != tok.Value {
		t.Fatalf("agent FreshToken again: same token %v, %v", again.Value == tok.Value, err)
	}
	if _, err := c.Token(ctx, testProfile, AccessToken, DefaultMargin); err == nil || !strings.Contains(err.Error(), "--min-ttl") {
		t.Errorf("agent Token with a 1m demand and 1-minute tokens: %v, want the --min-ttl error", err)
	}
}

// TestControlSocketConcurrentAgents: of agents starting at once for one config,
// exactly one serves; the others say another is running, and the one keeps its
// socket when they give up.
func TestControlSocketConcurrentAgents(t *testing.T) {
	e := newEnv(t, demo.Options{})
	path := controlSocketPath(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 8
	errs := make(chan error, n)
	var start sync.WaitGroup
	start.Add(1)
	for range n {
		go func() {
			start.Wait()
			errs <- ServeControl(ctx, e.b, path)
		}()
	}
	start.Done()
	served := 0
	for range n {
		if err := <-errs; err == nil {
			served++
		} else if !strings.Contains(err.Error(), "already running") {
			t.Errorf("a losing agent: %v", err)
		}
	}
	if served != 1 {
		t.Fatalf("%d agents serve one config, want 1", served)
	}
	if !(AgentClient{Path: path}).Alive(ctx) {
		t.Fatal("the agent that won does not answer on its socket")
	}
}

// TestRefreshScheduledOnTheShorterLivedToken: when the ID token lives shorter than
// the access token, the proactive refresh comes at 80% of the ID token's lifetime,
// not of the access token's (by which time the ID token would have expired).
func TestRefreshScheduledOnTheShorterLivedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{AccessTTL: 2 * time.Hour, IDTokenTTL: time.Hour})
	ctx := context.Background()
	e.login()
	e.clock.Advance(47 * time.Minute) // before 80% of the ID token's hour
	e.b.Tick(ctx)
	if got := e.idp.Stats().Refreshes; got != 0 {
		t.Fatalf("refreshes at 47m = %d, want 0", got)
	}
	e.clock.Advance(2 * time.Minute) // past 80% of the ID token's hour, 41% of the access token's
	e.b.Tick(ctx)
	if got := e.idp.Stats().Refreshes; got != 1 {
		t.Fatalf("refreshes at 49m = %d, want 1 (the ID token expires at 60m)", got)
	}
}

// TestRotatedTokenSavedBeforeTheAnswerIsVerified: the rotated refresh token is in the
// keychain even when the refreshed ID token then fails verification: the issuer has
// spent the old one, and losing the new one would end the sign-in (oidc-agent #406).
func TestRotatedTokenSavedBeforeTheAnswerIsVerified(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{RotateRefreshTokens: true, DetectReuse: true})
	ctx := context.Background()
	e.login()
	orig, _ := e.entry()
	e.idp.Tamper(demo.TamperBadSignature) // the refresh's ID token
	e.clock.Advance(2 * time.Hour)
	_, err := e.b.Token(ctx, testProfile, IDToken, time.Minute)
	assertContains(t, err, "ID token verification")
	assertNoTokenText(t, err)
	if cur, _ := e.entry(); cur == nil || cur.RefreshToken == orig.RefreshToken {
		t.Fatal("the keychain still holds the spent refresh token: the rotated one was not saved before verification")
	}
	// Another process refreshes with what the keychain holds: no reuse detected.
	e.clock.Advance(backoff(1) + time.Second)
	e.tokenNoReuse(e.newBroker(), "another process refreshing from the keychain")
}

// TestInvalidGrantNotResentWhenTheRefusalIsNotRecorded: when the keychain refuses
// the mark of an invalid_grant (Entry.Refused), this process still knows the
// refresh token is dead and does not spend it again on every request.
func TestInvalidGrantNotResentWhenTheRefusalIsNotRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	ctx := context.Background()
	e.login()
	e.idp.RevokeAll()
	e.clock.Advance(2 * time.Hour)
	e.kc.FailNext("set", errors.New("keychain is locked"))
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); !errors.Is(err, ErrSignInRequired) {
		t.Fatalf("Token = %v, want sign-in required", err)
	}
	if stored, _ := e.entry(); stored == nil || stored.Refused != "" {
		t.Fatalf("keychain entry %v, want the entry without the refusal (the write failed)", stored)
	}
	n := e.tr.count("/token")
	for range 5 {
		if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); !errors.Is(err, ErrSignInRequired) {
			t.Fatalf("Token after invalid_grant = %v, want sign-in required", err)
		}
	}
	if got := e.tr.count("/token"); got != n {
		t.Fatalf("Token re-sent a refused refresh token (%d -> %d requests)", n, got)
	}
}

// TestUnsavedRotationYieldsToANewSignIn: a rotated refresh token the keychain
// refused stands in for the entry only while the keychain still holds the token it
// replaced. Once another process has signed in again, that sign-in is used, and is
// neither overwritten with the stale token nor marked refused.
func TestUnsavedRotationYieldsToANewSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{RotateRefreshTokens: true, DetectReuse: true})
	ctx := context.Background()
	e.login()
	e.clock.Advance(2 * time.Hour)
	e.kc.FailNext("set", errors.New("keychain is locked"))
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); err == nil {
		t.Fatal("want the save error")
	}
	// The issuer ends that sign-in (the token kept in memory with it), and the user
	// signs in again in another gatepass process.
	e.idp.RevokeAll()
	if _, err := e.newBroker().Login(ctx, testProfile, LoginOptions{Browser: newDemoBrowser(true), Timeout: 10 * time.Second}); err != nil {
		t.Fatalf("Login in another process: %v", err)
	}
	e.clock.Advance(backoff(1) + time.Second)
	if _, err := e.b.Token(ctx, testProfile, IDToken, time.Minute); err != nil {
		t.Fatalf("Token after another process signed in again: %v", err)
	}
	if cur, _ := e.entry(); cur == nil || cur.Refused != "" {
		t.Fatalf("keychain entry after the refresh: %v, want the new sign-in, not refused", cur)
	}
	if st := e.idp.Stats(); st.InvalidGrants != 0 {
		t.Fatalf("issuer answered invalid_grant %d times: the stale rotated token was spent", st.InvalidGrants)
	}
}

// TestRefreshLockAcrossProcesses: two gatepass processes refreshing at once take
// turns through the profile's lock file, and the second re-reads the entry the
// first rotated, so a rotating issuer with reuse detection never sees a refresh
// token spent twice.
func TestRefreshLockAcrossProcesses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{RotateRefreshTokens: true, DetectReuse: true})
	ctx := context.Background()
	e.login()
	e.clock.Advance(2 * time.Hour)
	e.idp.SetDelay("token", 200*time.Millisecond) // both are in flight at once
	procs := []*Broker{e.newBroker(), e.newBroker()}
	errs := make(chan error, len(procs))
	for _, b := range procs {
		go func() {
			_, err := b.Token(ctx, testProfile, IDToken, time.Minute)
			errs <- err
		}()
	}
	for range procs {
		if err := <-errs; err != nil {
			t.Errorf("Token in one of two processes: %v", err)
		}
	}
	if st := e.idp.Stats(); st.InvalidGrants != 0 || st.Refreshes != 2 {
		t.Fatalf("issuer stats: %d invalid_grant, %d refreshes; want 0 and 2", st.InvalidGrants, st.Refreshes)
	}
}

// TestFreshTokenKeepsATokenWithMoreThanAQuarterLeft: FreshToken's margin is capped
// at a quarter of a short token's lifetime, no more: a one-minute token with 20s
// left is handed out without a refresh.
func TestFreshTokenKeepsATokenWithMoreThanAQuarterLeft(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{AccessTTL: time.Minute, IDTokenTTL: time.Minute})
	ctx := context.Background()
	e.login()
	first, err := e.b.FreshToken(ctx, testProfile, IDToken, DefaultMargin)
	if err != nil {
		t.Fatalf("FreshToken right after login: %v", err)
	}
	e.clock.Advance(40 * time.Second) // 20s left: more than a quarter, less than half
	tok, err := e.b.FreshToken(ctx, testProfile, IDToken, DefaultMargin)
	if err != nil || tok.Value != first.Value {
		t.Fatalf("FreshToken with 20s of 60s left: new token %v, %v; want the same token", tok.Value != first.Value, err)
	}
	if n := e.idp.Stats().Refreshes; n != 0 {
		t.Fatalf("refreshes = %d with more than a quarter of the lifetime left, want 0", n)
	}
}

// TestTokenEndpointErrorQuotesOnlyCodeAndDescription: an OAuth error answer that
// carries other fields (an issuer or gateway echoing the request, tokens and all)
// is reported by its error code and description only.
func TestTokenEndpointErrorQuotesOnlyCodeAndDescription(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	e.clock.Advance(2 * time.Hour)
	e.idp.FailNext("token", http.StatusServiceUnavailable, "application/json",
		`{"error":"temporarily_unavailable","error_description":"Try again later.","refresh_token":"1//leak","access_token":"ya29.leak","id_token":"eyJleak"}`)
	_, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute)
	assertContains(t, err, "HTTP 503", "temporarily_unavailable", "Try again later.")
	assertNoTokenText(t, err)
	if st, _ := e.b.Status(testProfile); strings.Contains(st.Reason, "leak") {
		t.Errorf("status reason quotes the answer's other fields: %q", st.Reason)
	}
}

// TestAgentRefreshesSoonAfterWake: the running agent checks the schedule every
// few seconds on the wall clock, so after a sleep it refreshes by itself within
// seconds, without a Tick from the test or a request (LESSONS: aws-vault #222).
func TestAgentRefreshesSoonAfterWake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	agent := e.newBroker()
	ctx := startAgent(t, agent)
	agent.Tick(ctx) // waits for Start's first refresh
	if got := e.idp.Stats().Refreshes; got != 1 {
		t.Fatalf("refreshes after Start = %d, want 1", got)
	}
	e.clock.Advance(3 * time.Hour) // the laptop slept
	deadline := time.Now().Add(10 * time.Second)
	for e.idp.Stats().Refreshes < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := e.idp.Stats().Refreshes; got != 2 {
		t.Fatalf("refreshes 10s after a 3h clock jump = %d, want 2 (Start's and one after waking)", got)
	}
}
