package main

// End-to-end tests of the real gatepass binary against a real OpenID
// Provider that nobody on this team wrote (zitadel/oidc v3, see
// realop_op_test.go), the real keychain (Secret Service over D-Bus) and a
// scripted browser that fills in the OP's login form.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	keyring "github.com/zalando/go-keyring"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker"
)

func init() {
	registerBrowser("realop", func(ctx context.Context, opened string) error {
		authURL, err := realOPResolve(ctx, opened)
		if err != nil {
			return err
		}
		// gatepass shows only its start address; the test reads the authorization
		// request back from the browser log.
		if p := os.Getenv("GATEPASS_TEST_BROWSER_LOG"); p != "" {
			if f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
				fmt.Fprintf(f, "browser realop: authorization request %s\n", authURL)
				_ = f.Close()
			}
		}
		return realOPBrowse(ctx, authURL)
	})
}

// realOPSetup is one profile signed out at a fresh real OP.
type realOPSetup struct {
	t                         *testing.T
	ctx                       context.Context
	issuer, clientID, profile string
	config                    string // path of the gatepass config
	discovery                 realOPDiscovery
	idVerifier                *gooidc.IDTokenVerifier
}

func newRealOPSetup(t *testing.T) *realOPSetup {
	t.Helper()
	requireKeychain(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	issuer, clientID, secret := startRealOP(t)
	profile := uniqueProfile("realop")
	t.Cleanup(func() {
		if err := keyring.Delete(broker.KeychainService, profile); err != nil && !errors.Is(err, keyring.ErrNotFound) {
			t.Errorf("clean up keychain entry %s: %v", profile, err)
		}
	})
	cfg := writeConfig(t, fmt.Sprintf(`default_profile = %[1]q

[profiles.%[1]s]
issuer = %[2]q
client_id = %[3]q
client_secret = %[4]q
scopes = ["openid", "email"]
gateways = ["api.realop.invalid"]
inject = "id_token"
`, profile, issuer, clientID, secret))
	provider, err := gooidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	return &realOPSetup{
		t: t, ctx: ctx, issuer: issuer, clientID: clientID, profile: profile, config: cfg,
		discovery:  realOPDiscover(t, ctx, issuer),
		idVerifier: provider.Verifier(&gooidc.Config{ClientID: clientID}),
	}
}

// gatepass runs the binary for this setup's config and profile.
func (s *realOPSetup) gatepass(args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	return runGatepass(s.t, nil, append([]string{"--config", s.config, "--profile", s.profile}, args...)...)
}

// login signs in through the scripted browser and returns the URL gatepass
// printed on stderr.
func (s *realOPSetup) login() *url.URL {
	s.t.Helper()
	stdout, stderr, code := s.gatepass("login", "--browser-command", browserCommand("realop"))
	if code != 0 {
		s.t.Fatalf("login: exit %d\nstderr:\n%s\nbrowser log:\n%s", code, stderr, browserLog(s.t))
	}
	if stdout != "" {
		s.t.Errorf("login wrote to stdout: %q", stdout)
	}
	if !regexp.MustCompile(`http://127\.0\.0\.1:\d+/\s`).MatchString(stderr) || strings.Contains(stderr, "state=") {
		s.t.Errorf("login did not print the sign-in's start address (and only it) on stderr:\n%s", stderr)
	}
	all := regexp.MustCompile(regexp.QuoteMeta(s.issuer)+`/auth\?\S+`).FindAllString(browserLog(s.t), -1)
	if len(all) == 0 {
		s.t.Fatalf("the browser was not sent on to the authorization URL:\n%s", browserLog(s.t))
	}
	m := all[len(all)-1] // the last is this login's
	u, err := url.Parse(m)
	if err != nil {
		s.t.Fatal(err)
	}
	return u
}

// realOPEntry is the keychain entry as DESIGN §4 describes it.
type realOPEntry struct {
	RefreshToken string `json:"rt"`
	Issuer       string `json:"iss"`
	ClientID     string `json:"aud"`
	Subject      string `json:"sub"`
	Email        string `json:"email"`
	raw          string
}

// entry reads the profile's keychain entry the way any other program could.
func (s *realOPSetup) entry() realOPEntry {
	s.t.Helper()
	raw, err := keyring.Get(broker.KeychainService, s.profile)
	if err != nil {
		s.t.Fatalf("keychain entry %s/%s: %v", broker.KeychainService, s.profile, err)
	}
	var e realOPEntry
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		s.t.Fatalf("keychain entry is not JSON: %v", err)
	}
	if e.RefreshToken == "" {
		s.t.Fatal("keychain entry has no refresh token (rt)")
	}
	e.raw = raw
	return e
}

// token runs `gatepass token` and returns the token, failing unless stdout
// is exactly the token and a newline.
func (s *realOPSetup) token(args ...string) string {
	s.t.Helper()
	stdout, stderr, code := s.gatepass(append([]string{"token"}, args...)...)
	if code != 0 {
		s.t.Fatalf("token %v: exit %d\nstderr:\n%s", args, code, stderr)
	}
	tok := strings.TrimSuffix(stdout, "\n")
	if tok == "" || strings.ContainsAny(tok, " \n\t") {
		s.t.Fatalf("token %v: stdout is not one token and a newline (%d bytes)", args, len(stdout))
	}
	if strings.Contains(stderr, tok) {
		s.t.Errorf("token %v: the token also appears on stderr", args)
	}
	return tok
}

// verifyID checks an ID token against the OP's keys (signature), issuer,
// audience = client ID and expiry, and that it names the OP's test user.
func (s *realOPSetup) verifyID(raw string) *gooidc.IDToken {
	s.t.Helper()
	idt, err := s.idVerifier.Verify(s.ctx, raw)
	if err != nil {
		s.t.Fatalf("the ID token gatepass printed does not verify against the OP: %v", err)
	}
	var claims struct {
		Email string `json:"email"`
	}
	if err := idt.Claims(&claims); err != nil {
		s.t.Fatal(err)
	}
	if idt.Issuer != s.issuer || !slices.Contains(idt.Audience, s.clientID) || idt.Subject != realOPSubject || claims.Email != realOPEmail {
		s.t.Errorf("ID token iss=%q aud=%q sub=%q email=%q; want %q, [%q], %q, %q",
			idt.Issuer, idt.Audience, idt.Subject, claims.Email, s.issuer, s.clientID, realOPSubject, realOPEmail)
	}
	return idt
}

// userinfoSubject calls the OP's userinfo endpoint with an access token
// (OIDC Core §5.3): only a live access token the OP issued gets an answer.
func (s *realOPSetup) userinfoSubject(accessToken string) (string, int) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, s.discovery.UserinfoEndpoint, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, body, err := realOPDo(http.DefaultClient, req)
	if err != nil {
		s.t.Fatalf("userinfo: %v", err)
	}
	var ui struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(body, &ui)
	return ui.Sub, resp.StatusCode
}

// status runs `gatepass status --json` and returns this profile's entry.
func (s *realOPSetup) status() broker.ProfileStatus {
	s.t.Helper()
	stdout, stderr, code := s.gatepass("status", "--json")
	if code != 0 {
		s.t.Fatalf("status --json: exit %d\nstderr:\n%s", code, stderr)
	}
	// The statuses are either the whole document or its "profiles" field.
	var statuses []broker.ProfileStatus
	if err := json.Unmarshal([]byte(stdout), &statuses); err != nil {
		var doc struct {
			Profiles []broker.ProfileStatus `json:"profiles"`
		}
		if err2 := json.Unmarshal([]byte(stdout), &doc); err2 != nil || doc.Profiles == nil {
			s.t.Fatalf("status --json is neither a list of profiles nor {\"profiles\": [...]}: %v / %v\n%s", err, err2, stdout)
		}
		statuses = doc.Profiles
	}
	for _, st := range statuses {
		if st.Profile == s.profile {
			return st
		}
	}
	s.t.Fatalf("status --json has no profile %q:\n%s", s.profile, stdout)
	return broker.ProfileStatus{}
}

// TestRealOPLifecycle drives login, token, status, refresh with rotation and
// logout against the zitadel OP, checking each step at the OP itself.
func TestRealOPLifecycle(t *testing.T) {
	s := newRealOPSetup(t)

	// Before login: not signed in, exit 3.
	if _, stderr, code := s.gatepass("token"); code != 3 {
		t.Fatalf("token before login: exit %d, want 3\nstderr:\n%s", code, stderr)
	}

	// Login: PKCE S256, a loopback redirect, offline access requested.
	authURL := s.login()
	q := authURL.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		t.Errorf("authorization URL lacks PKCE S256: method=%q", q.Get("code_challenge_method"))
	}
	if !slices.Contains(strings.Fields(q.Get("scope")), "offline_access") {
		t.Errorf("authorization URL scope = %q, want offline_access added (the OP lists it in discovery)", q.Get("scope"))
	}
	if ru, err := url.Parse(q.Get("redirect_uri")); err != nil || ru.Hostname() != "127.0.0.1" || ru.Port() == "" {
		t.Errorf("redirect_uri = %q, want http://127.0.0.1:PORT/...", q.Get("redirect_uri"))
	}
	e0 := s.entry()
	if e0.Issuer != s.issuer || e0.ClientID != s.clientID || e0.Subject != realOPSubject || e0.Email != realOPEmail {
		t.Errorf("keychain entry iss=%q aud=%q sub=%q email=%q; want %q %q %q %q",
			e0.Issuer, e0.ClientID, e0.Subject, e0.Email, s.issuer, s.clientID, realOPSubject, realOPEmail)
	}
	if len(e0.raw) > broker.MaxEntryBytes {
		t.Errorf("keychain entry is %d bytes, over %d", len(e0.raw), broker.MaxEntryBytes)
	}
	if !realOPRefreshTokenActive(t, s.issuer, e0.RefreshToken) {
		t.Fatal("the refresh token in the keychain is not one the OP honours")
	}

	// status --json: signed in as the OP's user.
	st := s.status()
	if st.State != broker.StateSignedIn || st.Issuer != s.issuer || st.ClientID != s.clientID ||
		st.Email != realOPEmail || st.Subject != realOPSubject {
		t.Errorf("status after login = %+v; want signed-in, %s, %s, %s, %s", st, s.issuer, s.clientID, realOPEmail, realOPSubject)
	}

	// ID token: verified against the OP's JWKS.
	id1 := s.token("--type", "id", "--format", "raw")
	s.verifyID(id1)

	// Access token: the OP's userinfo endpoint accepts it.
	at1 := s.token("--type", "access", "--min-ttl", "4m")
	if sub, code := s.userinfoSubject(at1); code != http.StatusOK || sub != realOPSubject {
		t.Errorf("userinfo with gatepass's access token: HTTP %d sub=%q; want 200 %q", code, sub, realOPSubject)
	}

	// Each CLI process starts without tokens in memory and refreshes; the OP
	// rotates the refresh token every time (the old one dies), so every
	// later step works only if gatepass saved the rotated one.
	e1 := s.entry()
	if e1.RefreshToken == e0.RefreshToken {
		t.Fatal("the refresh token in the keychain did not change after refreshes at a rotating OP")
	}
	if realOPRefreshTokenActive(t, s.issuer, e0.RefreshToken) || !realOPRefreshTokenActive(t, s.issuer, e1.RefreshToken) {
		t.Fatal("the keychain does not hold the OP's current refresh token")
	}
	for _, raw := range []string{id1, at1} {
		if strings.Contains(e1.raw, raw) {
			t.Error("the keychain entry holds an access or ID token; DESIGN §4 keeps them in memory only")
		}
	}

	at2 := s.token("--type", "access", "--min-ttl", "4m")
	if at2 == at1 {
		t.Error("a second refresh returned the same access token")
	}
	if sub, code := s.userinfoSubject(at2); code != http.StatusOK || sub != realOPSubject {
		t.Errorf("userinfo with the refreshed access token: HTTP %d sub=%q", code, sub)
	}
	e2 := s.entry()
	if e2.RefreshToken == e1.RefreshToken || !realOPRefreshTokenActive(t, s.issuer, e2.RefreshToken) {
		t.Fatal("the rotated refresh token of the second refresh was not saved")
	}

	// --min-ttl longer than the OP's token lifetime (5 min access, 1 h ID):
	// gatepass refreshes, then refuses, saying why; the rotated refresh
	// token is still saved.
	stdout, stderr, code := s.gatepass("token", "--type", "access", "--min-ttl", "24h")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "min-ttl") {
		t.Errorf("token --min-ttl 24h: exit %d, stdout %d bytes, stderr:\n%s\nwant exit 1, no stdout, a message about --min-ttl", code, len(stdout), stderr)
	}
	e3 := s.entry()
	if e3.RefreshToken == e2.RefreshToken || !realOPRefreshTokenActive(t, s.issuer, e3.RefreshToken) {
		t.Fatal("after token --min-ttl 24h the keychain does not hold the OP's current refresh token")
	}

	// kubectl exec credential with the ID token.
	stdout, stderr, code = s.gatepass("token", "--type", "id", "--format", "exec-credential")
	if code != 0 {
		t.Fatalf("token --format exec-credential: exit %d\n%s", code, stderr)
	}
	var ec struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Status     struct {
			Token               string    `json:"token"`
			ExpirationTimestamp time.Time `json:"expirationTimestamp"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(stdout), &ec); err != nil {
		t.Fatalf("exec-credential is not JSON: %v", err)
	}
	if ec.APIVersion != "client.authentication.k8s.io/v1" || ec.Kind != "ExecCredential" {
		t.Errorf("exec-credential apiVersion=%q kind=%q", ec.APIVersion, ec.Kind)
	}
	idt := s.verifyID(ec.Status.Token)
	if d := ec.Status.ExpirationTimestamp.Sub(idt.Expiry); d < -time.Second || d > time.Second {
		t.Errorf("expirationTimestamp %s, ID token exp %s", ec.Status.ExpirationTimestamp, idt.Expiry)
	}

	// Logout revokes at the OP (RFC 7009) and deletes the entry.
	before := s.entry()
	revocations := realOPRevocations(t, s.issuer)
	stdout, stderr, code = s.gatepass("logout")
	if code != 0 {
		t.Fatalf("logout: exit %d\nstderr:\n%s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("logout wrote to stdout: %q", stdout)
	}
	if got := realOPRevocations(t, s.issuer); got != revocations+1 {
		t.Errorf("logout sent %d revocation requests, want 1", got-revocations)
	}
	if realOPRefreshTokenActive(t, s.issuer, before.RefreshToken) {
		t.Error("the OP still honours the refresh token after logout: it was not revoked")
	}
	if _, err := realOPRefresh(s.ctx, s.issuer, before.RefreshToken); realOPErrorCode(err) != "invalid_grant" {
		t.Errorf("refresh with the logged-out refresh token: err = %v, want invalid_grant", err)
	}
	if _, err := keyring.Get(broker.KeychainService, s.profile); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("keychain entry after logout: err = %v, want not found", err)
	}
	if _, stderr, code := s.gatepass("token"); code != 3 {
		t.Errorf("token after logout: exit %d, want 3\nstderr:\n%s", code, stderr)
	} else if fix := s.loginFix(); !strings.Contains(stderr, fix) {
		t.Errorf("token after logout: stderr does not tell the user to run %s:\n%s", fix, stderr)
	}
	if st := s.status(); st.State != broker.StateSignedOut {
		t.Errorf("status after logout: state %q, want %q", st.State, broker.StateSignedOut)
	}
}

// TestRealOPRevokedAtIssuer: when the OP stops honouring the refresh token
// (revoked elsewhere), `token` exits 3, status says sign-in is required, and
// a new login recovers.
func TestRealOPRevokedAtIssuer(t *testing.T) {
	s := newRealOPSetup(t)
	s.login()
	if err := realOPRevoke(s.ctx, s.discovery.RevocationEndpoint, s.entry().RefreshToken, "refresh_token"); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := s.gatepass("token")
	if code != 3 || stdout != "" {
		t.Fatalf("token with a revoked refresh token: exit %d, stdout %d bytes; want 3 and none\nstderr:\n%s", code, len(stdout), stderr)
	}
	if fix := s.loginFix(); !strings.Contains(stderr, fix) {
		t.Errorf("stderr does not tell the user to run %s:\n%s", fix, stderr)
	}
	s.login()
	s.verifyID(s.token("--type", "id"))
	if st := s.status(); st.State != broker.StateSignedIn || st.Email != realOPEmail {
		t.Errorf("status after signing in again: %+v", st)
	}
}

// TestRealOPConcurrentRefresh runs several `gatepass token` processes at once
// against an OP that rotates refresh tokens and rejects a rotated one: each
// must take its turn under the profile lock and read the newest token, or a
// process spends a dead token and exits 3 (LESSONS: oidc-agent #406).
func TestRealOPConcurrentRefresh(t *testing.T) {
	s := newRealOPSetup(t)
	s.login()
	const n = 4
	type result struct {
		stdout, stderr string
		code           int
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// runGatepass calls t.Fatalf only when the binary cannot start.
			results[i].stdout, results[i].stderr, results[i].code = s.gatepass("token", "--type", "access", "--min-ttl", "4m")
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("process %d: exit %d\nstderr:\n%s", i, r.code, r.stderr)
			continue
		}
		// Each process refreshed (tokens live in memory only), so each got
		// its own access token. (The OP drops an access token when the
		// refresh token it came with is rotated, so only the last one
		// would still pass userinfo.)
		seen[strings.TrimSpace(r.stdout)] = true
	}
	if len(seen) != n && !t.Failed() {
		t.Errorf("%d processes printed %d distinct access tokens, want %d", n, len(seen), n)
	}
	if !realOPRefreshTokenActive(t, s.issuer, s.entry().RefreshToken) {
		t.Error("after concurrent refreshes the keychain does not hold the OP's current refresh token")
	}
	// One more process after the storm still works, with a live token.
	at := s.token("--type", "access", "--min-ttl", "4m")
	if sub, code := s.userinfoSubject(at); code != http.StatusOK || sub != realOPSubject {
		t.Errorf("userinfo with the access token after the concurrent refreshes: HTTP %d sub=%q", code, sub)
	}
}

// loginFix is the command a sign-in-required error tells the user to run: it names
// this (non-default) config.
func (s *realOPSetup) loginFix() string {
	return "run `gatepass --config " + app.ShellQuote(s.config) + " login --profile " + s.profile + "`"
}
