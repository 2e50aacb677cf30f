package broker

import (
	"context"
	"errors"
	"github.com/gatepass-dev/gatepass/internal/syncbuf"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker/demo"
)

// syncBuffer collects what another goroutine writes (a child's output, log lines)
// while the test reads it.
type syncBuffer = syncbuf.Buffer

// urlBrowser records the URLs it is asked to open and does nothing else, so
// the test decides when (and whether) the user finishes in the browser.
type urlBrowser struct {
	urls chan string
	err  error
}

func (u *urlBrowser) Open(s string) error {
	u.urls <- s
	return u.err
}

func (u *urlBrowser) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-u.urls:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the browser was never opened")
		return ""
	}
}

func browse(t *testing.T, authURL string, approve bool) browseResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, body, err := demo.Browse(ctx, authURL, approve)
	return browseResult{st, body, err}
}

func TestLoginSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	br := newDemoBrowser(true)
	var prompt syncBuffer
	st, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: br, Prompt: &prompt, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if st.State != StateSignedIn || st.Email != "dev@example.test" || st.Subject != "1000001" || st.Profile != testProfile {
		t.Fatalf("Login status %+v, want signed-in as dev@example.test (1000001)", st)
	}
	if !st.Expiry.After(e.clock.Now().Add(50 * time.Minute)) {
		t.Fatalf("status expiry %v, want about an hour from %v", st.Expiry, e.clock.Now())
	}

	en, ok := e.entry()
	if !ok {
		t.Fatal("no keychain entry after login")
	}
	if !strings.HasPrefix(en.RefreshToken, "1//") || en.Issuer != e.idp.Issuer() || en.ClientID != e.idp.ClientID() ||
		en.Subject != "1000001" || en.Email != "dev@example.test" || en.Version != 1 {
		t.Fatalf("entry %v, want the demo's refresh token, issuer, client, subject and email", en)
	}
	if !en.SavedAt.Equal(e.clock.Now().UTC().Truncate(time.Second)) {
		t.Fatalf("SavedAt %v, want the broker clock %v", en.SavedAt, e.clock.Now())
	}
	if got, _ := e.b.Status(testProfile); got.State != StateSignedIn || got.Email != "dev@example.test" {
		t.Fatalf("Status %+v, want signed-in", got)
	}

	// The browser was opened once, with a PKCE S256 authorization request
	// to a loopback redirect (RFC 7636, RFC 8252 §7.3).
	urls := br.opened()
	if len(urls) != 1 {
		t.Fatalf("browser opened %d times, want 1", len(urls))
	}
	q := e.idp.Stats().LastAuthParams
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
		t.Errorf("authorization request PKCE %q/%q, want S256 with a 43-char challenge", q.Get("code_challenge_method"), q.Get("code_challenge"))
	}
	if len(q.Get("state")) < 22 || len(q.Get("nonce")) < 22 || q.Get("state") == q.Get("nonce") {
		t.Errorf("state %q / nonce %q: want two distinct random values of at least 128 bits", q.Get("state"), q.Get("nonce"))
	}
	if ru, err := url.Parse(q.Get("redirect_uri")); err != nil || ru.Scheme != "http" || ru.Hostname() != "127.0.0.1" || ru.Port() == "" || ru.Path != "/callback" {
		t.Errorf("redirect_uri %q, want http://127.0.0.1:PORT/callback", q.Get("redirect_uri"))
	}
	if !strings.Contains(" "+q.Get("scope")+" ", " offline_access ") || !strings.Contains(q.Get("scope"), "openid") {
		t.Errorf("scope %q, want openid and offline_access (listed in discovery)", q.Get("scope"))
	}
	if !strings.Contains(prompt.String(), urls[0]) {
		t.Errorf("the prompt does not show the authorization URL:\n%s", prompt.String())
	}

	page := br.page(t)
	if page.err != nil || page.status != http.StatusOK || !strings.Contains(page.body, "dev@example.test") {
		t.Errorf("callback page %d %v, want 200 naming the account:\n%s", page.status, page.err, page.body)
	}
	for _, p := range append(tokenPrefixes, "4/0demo-") {
		if strings.Contains(page.body, p) {
			t.Errorf("callback page contains %q", p)
		}
	}

	// The callback listener is gone once Login returns.
	ru, _ := url.Parse(q.Get("redirect_uri"))
	if c, err := net.DialTimeout("tcp", ru.Host, time.Second); err == nil {
		c.Close()
		t.Errorf("the loopback listener %s still accepts connections after Login", ru.Host)
	}

	// The tokens are usable without another request to the issuer.
	if _, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute); err != nil {
		t.Fatalf("Token after login: %v", err)
	}
	if s := e.idp.Stats(); s.Refreshes != 0 || s.CodeExchanges != 1 {
		t.Fatalf("issuer stats %+v, want one code exchange and no refresh", s)
	}
}

func TestLoginNoBrowserPrintsURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	var prompt syncBuffer
	never := &urlBrowser{urls: make(chan string, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: never, NoBrowser: true, Prompt: &prompt, Timeout: 10 * time.Second})
		done <- err
	}()
	// The prompt shows the start address on the callback listener, not the
	// authorization URL with its state.
	re := regexp.MustCompile(`http://127\.0\.0\.1:\d+/\s`)
	var startURL string
	for deadline := time.Now().Add(10 * time.Second); startURL == "" && time.Now().Before(deadline); {
		startURL = strings.TrimSpace(re.FindString(prompt.String()))
		time.Sleep(10 * time.Millisecond)
	}
	if startURL == "" {
		t.Fatalf("no start address in the prompt:\n%s", prompt.String())
	}
	if r := browse(t, startURL, true); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("browsing the printed URL: %d %v", r.status, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v", err)
	}
	assertNoAuthParams(t, "the prompt", prompt.String(), e.idp.Stats().LastAuthParams)
	if len(never.urls) != 0 {
		t.Fatal("NoBrowser still opened the browser")
	}
}

func TestLoginBrowserFailsStillPrintsURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	var prompt syncBuffer
	br := &urlBrowser{urls: make(chan string, 1), err: errors.New("xdg-open: not found")}
	done := make(chan error, 1)
	go func() {
		_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: br, Prompt: &prompt, Timeout: 10 * time.Second})
		done <- err
	}()
	u := br.next(t)
	if r := browse(t, u, true); r.err != nil {
		t.Fatal(r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v", err)
	}
	if out := prompt.String(); !strings.Contains(out, "xdg-open: not found") || !strings.Contains(out, u) {
		t.Fatalf("prompt does not explain the browser failure and show the URL:\n%s", out)
	}
}

func TestLoginConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	br := &urlBrowser{urls: make(chan string, 4)}
	done := make(chan error, 1)
	go func() {
		_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: br, Timeout: 10 * time.Second})
		done <- err
	}()
	u := br.next(t)
	if st, _ := e.b.Status(testProfile); st.State != StateSigningIn {
		t.Fatalf("state while waiting for the browser: %s, want signing-in", st.State)
	}

	_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: br, Timeout: 10 * time.Second})
	if !errors.Is(err, ErrLoginInProgress) {
		t.Fatalf("second Login = %v, want ErrLoginInProgress", err)
	}
	assertContains(t, err, testProfile)
	if len(br.urls) != 0 {
		t.Fatal("the second Login opened the browser again")
	}

	if r := browse(t, u, true); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("browser: %d %v", r.status, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("first Login: %v", err)
	}
	if got := e.idp.Stats().Authorizations; got != 1 {
		t.Fatalf("authorization requests = %d, want 1", got)
	}
	// Once finished, a new sign-in may start.
	if _, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: newDemoBrowser(true), Timeout: 10 * time.Second}); err != nil {
		t.Fatalf("Login after the first finished: %v", err)
	}
}

func TestLoginKeychainSetFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	ch, cancel := e.b.Subscribe()
	defer cancel()
	e.kc.FailNext("set", errors.New("the keychain is locked"))
	br := newDemoBrowser(true)
	st, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: br, Timeout: 10 * time.Second})
	assertContains(t, err, "keychain", "the keychain is locked", testProfile)
	assertNoTokenText(t, err)
	if _, ok := e.entry(); ok || e.kc.Writes() != 0 {
		t.Fatalf("keychain written %d times after a failed Set", e.kc.Writes())
	}
	if st.State != StateSignedOut {
		t.Fatalf("returned state %s, want signed-out restored", st.State)
	}
	if got, _ := e.b.Status(testProfile); got.State != StateSignedOut || got.Email != "" {
		t.Fatalf("status %+v, want signed-out", got)
	}
	waitEvent(t, ch, StateSigningIn)
	waitEvent(t, ch, StateSignedOut)
	if _, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute); !errors.Is(err, ErrSignInRequired) {
		t.Fatalf("Token after a failed login = %v, want sign-in required", err)
	}
	if page := br.page(t); page.status != http.StatusBadGateway || !strings.Contains(page.body, "keychain") {
		t.Fatalf("callback page %d, want 502 explaining the keychain failure:\n%s", page.status, page.body)
	}
}

// TestLoginFailureKeepsPreviousSignIn: a failed second sign-in leaves the
// first one in place.
func TestLoginFailureKeepsPreviousSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.login()
	before, _ := e.entry()
	e.idp.Tamper(demo.TamperWrongAudience)
	_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: newDemoBrowser(true), Timeout: 10 * time.Second})
	var ie *IssuerError
	if !errors.As(err, &ie) {
		t.Fatalf("Login = %v, want *IssuerError", err)
	}
	after, _ := e.entry()
	if after == nil || after.RefreshToken != before.RefreshToken {
		t.Fatal("a failed sign-in replaced the stored one")
	}
	if st, _ := e.b.Status(testProfile); st.State != StateSignedIn || st.Email != "dev@example.test" {
		t.Fatalf("status %+v, want still signed-in", st)
	}
	if _, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute); err != nil {
		t.Fatalf("Token after a failed re-login: %v", err)
	}
}

func TestLoginFailures(t *testing.T) {
	t.Parallel()
	const leak = "ya29.leak-access 1//leak-refresh eyJleak.id.token"
	tests := map[string]struct {
		setup     func(t *testing.T, e *testEnv, opts *LoginOptions)
		deny      bool
		as        func(error) bool // typed error check, nil when none applies
		want      []string         // substrings of the message
		noBrowser bool             // the browser must not have been opened
		maxTime   time.Duration
	}{
		"wrong audience": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) { e.idp.Tamper(demo.TamperWrongAudience) },
			as:    isErr[*IssuerError],
			want:  []string{"ID token verification", "audience", "client_id"},
		},
		"bad signature": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) { e.idp.Tamper(demo.TamperBadSignature) },
			as:    isErr[*IssuerError],
			want:  []string{"ID token verification", "signature", "not stored"},
		},
		"expired ID token": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) { e.idp.Tamper(demo.TamperExpired) },
			as:    isErr[*IssuerError],
			want:  []string{"ID token verification", "expired", "clock"},
		},
		"wrong issuer in ID token": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) { e.idp.Tamper(demo.TamperWrongIssuer) },
			as:    isErr[*IssuerError],
			want:  []string{"ID token verification", "issuer"},
		},
		"ID token with another nonce": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) { e.idp.Tamper(demo.TamperWrongNonce) },
			as:    isErr[*IssuerError],
			want:  []string{"ID token verification", "nonce does not match", "sign in again"},
		},
		"token endpoint 400": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("token", http.StatusBadRequest, "application/json", `{"error":"invalid_request","error_description":"client_secret is missing."}`)
			},
			as:   isErr[*IssuerError],
			want: []string{"HTTP 400", "invalid_request", "client_secret"},
		},
		"token endpoint 401 invalid_client": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("token", http.StatusUnauthorized, "application/json", `{"error":"invalid_client","error_description":"Unauthorized"}`)
			},
			as:   isErr[*IssuerError],
			want: []string{"HTTP 401", "invalid_client", "check client_id and client_secret"},
		},
		"token endpoint 500 with tokens in the body": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("token", http.StatusInternalServerError, "application/json", `{"access_token":"ya29.leak","refresh_token":"1//leak","id_token":"eyJleak"}`)
			},
			as:   isErr[*IssuerError],
			want: []string{"HTTP 500", "retry later"},
		},
		"token endpoint HTML error page": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("token", http.StatusBadGateway, "text/html", "<html><body>502 Bad Gateway "+leak+"</body></html>")
			},
			as:   isErr[*IssuerError],
			want: []string{"HTTP 502", "not a JSON OAuth response"},
		},
		"token endpoint HTML with 200": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("token", http.StatusOK, "text/html", "<html><body>Please log in to the proxy "+leak+"</body></html>")
			},
			as:   isErr[*IssuerError],
			want: []string{"token request", "not a usable token response"},
		},
		"token endpoint garbage JSON": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("token", http.StatusOK, "application/json", `{"access_token":"ya29.leak","refresh_token":"1//leak","expires_in":`)
			},
			as:   isErr[*IssuerError],
			want: []string{"token request", "not a usable token response"},
		},
		"token response without access_token": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("token", http.StatusOK, "application/json", `{"token_type":"Bearer","expires_in":3600,"refresh_token":"1//leak","id_token":"eyJhbGciOiJSUzI1NiJ9.eyJsZWFrIjoxfQ.c2ln"}`)
			},
			as:   isErr[*IssuerError],
			want: []string{"missing access_token"},
		},
		"discovery 404": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("discovery", http.StatusNotFound, "text/html", "<html><body><h1>Not Found</h1>"+strings.Repeat("<p>filler</p>", 500)+"</body></html>")
			},
			as:        isErr[*IssuerError],
			want:      []string{"discovery", "404", "check `issuer`"},
			noBrowser: true,
		},
		"discovery HTML": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("discovery", http.StatusOK, "text/html", "<html><body>Captive portal</body></html>")
			},
			as:        isErr[*IssuerError],
			want:      []string{"discovery", "check `issuer`"},
			noBrowser: true,
		},
		"discovery garbage JSON": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("discovery", http.StatusOK, "application/json", `{"issuer": 42, "authorization_endpoint": [`)
			},
			as:        isErr[*IssuerError],
			want:      []string{"discovery", "check `issuer`"},
			noBrowser: true,
		},
		"discovery names another issuer": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) {
				e.idp.FailNext("discovery", http.StatusOK, "application/json", `{"issuer":"https://elsewhere.example","authorization_endpoint":"https://elsewhere.example/a","token_endpoint":"https://elsewhere.example/t","jwks_uri":"https://elsewhere.example/j"}`)
			},
			as:        isErr[*IssuerError],
			want:      []string{"discovery", `names the issuer "https://elsewhere.example"`, "set `issuer` of profile " + testProfile + ` to "https://elsewhere.example" exactly`},
			noBrowser: true,
		},
		"issuer unreachable": {
			setup: func(_ *testing.T, e *testEnv, _ *LoginOptions) { _ = e.idp.Close() },
			as:    isErr[*IssuerError],
			// the hint for network failures
			want:      []string{"discovery", "reachable"},
			noBrowser: true,
		},
		"issuer slower than the timeout": {
			setup: func(_ *testing.T, e *testEnv, o *LoginOptions) {
				e.idp.SetDelay("discovery", 5*time.Second)
				o.Timeout = 300 * time.Millisecond
			},
			want:      []string{"timed out after 300ms", "--timeout"},
			noBrowser: true,
			maxTime:   3 * time.Second,
		},
		"token endpoint slower than the timeout": {
			setup: func(_ *testing.T, e *testEnv, o *LoginOptions) {
				e.idp.SetDelay("token", 10*time.Second)
				o.Timeout = 1500 * time.Millisecond
			},
			want:    []string{"timed out after 1.5s", "--timeout"},
			maxTime: 5 * time.Second,
		},
		"user cancels in the browser": {
			deny: true,
			as:   isErr[*AuthorizationError],
			want: []string{"cancelled", "gatepass login"},
		},
		"loopback port in use": {
			setup: func(t *testing.T, e *testEnv, o *LoginOptions) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				o.CallbackPort = ln.Addr().(*net.TCPAddr).Port
			},
			as:        isErr[*PortInUseError],
			want:      []string{"--callback-port", "another program"},
			noBrowser: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, demo.Options{})
			ch, cancel := e.b.Subscribe()
			defer cancel()
			br := newDemoBrowser(!tc.deny)
			opts := LoginOptions{Browser: br, Timeout: 10 * time.Second}
			if tc.setup != nil {
				tc.setup(t, e, &opts)
			}
			start := time.Now()
			st, err := e.b.Login(context.Background(), testProfile, opts)
			took := time.Since(start)
			if err == nil {
				t.Fatal("Login succeeded")
			}
			if tc.as != nil && !tc.as(err) {
				t.Errorf("error %v (%T) is not the expected type", err, err)
			}
			assertContains(t, err, append([]string{"profile " + testProfile}, tc.want...)...)
			assertNoTokenText(t, err)
			if len(err.Error()) > 1200 {
				t.Errorf("error message is %d bytes long: %.300s…", len(err.Error()), err)
			}
			if tc.maxTime > 0 && took > tc.maxTime {
				t.Errorf("Login took %v, want under %v", took, tc.maxTime)
			}
			if name == "loopback port in use" {
				var pe *PortInUseError
				if errors.As(err, &pe) && !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(opts.CallbackPort)) {
					t.Errorf("error %q does not name port %d", err, opts.CallbackPort)
				}
				if pe != nil && pe.Port != opts.CallbackPort {
					t.Errorf("PortInUseError.Port = %d, want %d", pe.Port, opts.CallbackPort)
				}
			}
			if _, ok := e.entry(); ok || e.kc.Writes() != 0 {
				t.Errorf("keychain holds an entry (%d writes) after a failed login", e.kc.Writes())
			}
			if st.State != StateSignedOut {
				t.Errorf("returned state %s, want signed-out", st.State)
			}
			if got, _ := e.b.Status(testProfile); got.State != StateSignedOut || got.Email != "" || !got.Expiry.IsZero() {
				t.Errorf("status after failure %+v, want signed-out with no account", got)
			}
			waitEvent(t, ch, StateSignedOut)
			if tc.noBrowser && len(br.opened()) != 0 {
				t.Errorf("the browser was opened %d times", len(br.opened()))
			}
			if !tc.noBrowser && len(br.opened()) != 1 {
				t.Errorf("the browser was opened %d times, want 1", len(br.opened()))
			}
			if len(br.opened()) == 1 && name != "token endpoint slower than the timeout" {
				// The browser tab shows the failure too, with no token in it.
				page := br.page(t)
				if page.status == http.StatusOK {
					t.Errorf("callback page says 200 for a failed sign-in:\n%s", page.body)
				}
				for _, p := range tokenPrefixes {
					if strings.Contains(page.body, p) {
						t.Errorf("callback page contains %q", p)
					}
				}
			}
		})
	}
}

func isErr[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

func TestLoginUnknownProfile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	br := newDemoBrowser(true)
	_, err := e.b.Login(context.Background(), "nope", LoginOptions{Browser: br})
	assertContains(t, err, "unknown profile", testProfile)
	if len(br.opened()) != 0 {
		t.Fatal("browser opened for an unknown profile")
	}
}

func TestLoginContextCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	br := &urlBrowser{urls: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.b.Login(ctx, testProfile, LoginOptions{Browser: br, Timeout: 10 * time.Second})
		done <- err
	}()
	br.next(t)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Login after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Login did not return after its context was cancelled")
	}
	if st, _ := e.b.Status(testProfile); st.State != StateSignedOut {
		t.Fatalf("state %s after a cancelled login, want signed-out", st.State)
	}
	// Not stuck: the next sign-in works.
	if _, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: newDemoBrowser(true), Timeout: 10 * time.Second}); err != nil {
		t.Fatalf("Login after a cancelled one: %v", err)
	}
}

// TestLoginGoogleWithoutSecret: Google refuses the code without the client secret,
// even with PKCE; the sign-in says so before it opens a browser or calls Google.
func TestLoginGoogleWithoutSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.cfg.Profiles[0].Issuer, e.cfg.Profiles[0].ClientSecret = "https://accounts.google.com", ""
	never := &urlBrowser{urls: make(chan string, 1)}
	_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: never, Timeout: 5 * time.Second})
	assertContains(t, err, "client_secret is missing", "Desktop app", "Credentials")
	if len(never.urls) != 0 {
		t.Error("a browser was opened")
	}
	if n := len(e.tr.hits); n != 0 {
		t.Errorf("%d requests went out", n)
	}
	if st, _ := e.b.Status(testProfile); st.State != StateSignedOut {
		t.Errorf("state %s after the refused sign-in", st.State)
	}
}

// TestLoginGoogleRules runs Google's code path (the default issuer's) against the demo
// with Google's rules for refresh tokens: only access_type=offline gets one, and after
// the first consent only with prompt=consent; offline_access is not Google's. The
// sign-in must ask for both, get a refresh token every time, and keep it working.
func TestLoginGoogleRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{GoogleRules: true})
	googleRulesIssuers.Store(e.idp.Issuer(), true)
	t.Cleanup(func() { googleRulesIssuers.Delete(e.idp.Issuer()) })
	for i := range 2 { // the second sign-in is after the first consent
		e.login()
		q := e.idp.Stats().LastAuthParams
		if q.Get("access_type") != "offline" || q.Get("prompt") != "select_account consent" || strings.Contains(q.Get("scope"), "offline_access") {
			t.Fatalf("sign-in %d asked for access_type=%q prompt=%q scope=%q; want offline, select_account consent and no offline_access",
				i+1, q.Get("access_type"), q.Get("prompt"), q.Get("scope"))
		}
		if en, ok := e.entry(); !ok || en.RefreshToken == "" {
			t.Fatalf("sign-in %d stored no refresh token", i+1)
		}
	}
	e.clock.Advance(2 * time.Hour)
	if _, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute); err != nil {
		t.Fatalf("refresh with the stored token: %v", err)
	}
}

// TestLoginWithoutRefreshToken: an issuer that gives no refresh token (here the demo
// with Google's rules, asked the way a non-Google issuer is) fails the sign-in with
// what to do, and stores nothing.
func TestLoginWithoutRefreshToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{GoogleRules: true})
	_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: newDemoBrowser(true), Timeout: 10 * time.Second})
	assertContains(t, err, "no refresh token", "offline access")
	if _, ok := e.entry(); ok {
		t.Error("a sign-in without a refresh token was stored")
	}
}

// TestLoginAddress: the sign-in's start address reaches Address once the browser
// was asked to open it: with nil when it opened, with the opener's error when not;
// a user then opens it by hand, and the sign-in still completes.
func TestLoginAddress(t *testing.T) {
	t.Parallel()
	type report struct {
		url string
		err error
	}
	login := func(e *testEnv, br *urlBrowser) (reports chan report, done chan error) {
		reports, done = make(chan report, 1), make(chan error, 1)
		go func() {
			_, err := e.b.Login(context.Background(), testProfile, LoginOptions{
				Browser: br, Timeout: 10 * time.Second,
				Address: func(url string, err error) { reports <- report{url, err} },
			})
			done <- err
		}()
		return reports, done
	}
	next := func(reports chan report) report {
		select {
		case r := <-reports:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("Address was not called")
		}
		return report{}
	}

	// The browser opened: the address comes with no error, for a user whose browser
	// shows nothing all the same.
	ok := newEnv(t, demo.Options{AutoApprove: true})
	obr := &urlBrowser{urls: make(chan string, 1)}
	reports, done := login(ok, obr)
	opened := obr.next(t)
	if r := next(reports); r.url != opened || r.err != nil {
		t.Fatalf("Address(%q, %v) after the browser opened, want the URL it was given and no error", r.url, r.err)
	}
	if _, _, err := demo.Browse(context.Background(), opened, true); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v", err)
	}

	e := newEnv(t, demo.Options{AutoApprove: true})
	br := &urlBrowser{urls: make(chan string, 1), err: errors.New("no browser here")}
	reports, done = login(e, br)
	opened = br.next(t)
	r := next(reports)
	if r.url != opened || r.err == nil || r.err.Error() != "no browser here" {
		t.Fatalf("Address(%q, %v), want the URL the browser was given and its error", r.url, r.err)
	}
	if strings.Contains(r.url, "state=") || strings.Contains(r.url, "code_challenge=") {
		t.Fatalf("Address got %s with its state, want the start address, not the authorization URL", hostPath(r.url))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := demo.Browse(ctx, r.url, true); err != nil { // the user opens it by hand
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v", err)
	}
}

// TestLoginTimeoutError: a sign-in whose browser opens and never comes back ends, at
// the timeout, in a *LoginTimeoutError (the desktop app branches on it to say
// "timed out" with Retry), whose text keeps the terminal's advice.
func TestLoginTimeoutError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	br := &urlBrowser{urls: make(chan string, 1)} // opens, and nothing comes back
	_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: br, Timeout: 300 * time.Millisecond})
	var lt *LoginTimeoutError
	if !errors.As(err, &lt) || lt.After != 300*time.Millisecond {
		t.Fatalf("Login = %v (%T), want a *LoginTimeoutError after 300ms", err, err)
	}
	assertContains(t, err, "profile "+testProfile, "timed out after 300ms waiting for the sign-in in the browser", "--timeout")
}

// TestLoginWithoutTimeoutWaitsTheDefault: LoginOptions without a Timeout (the desktop
// app's sign-in sets none) wait DefaultLoginTimeout for the browser, not no time at all.
func TestLoginWithoutTimeoutWaitsTheDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	st, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: newDemoBrowser(true)})
	if err != nil {
		t.Fatalf("Login without a Timeout: %v", err)
	}
	if st.State != StateSignedIn {
		t.Fatalf("Login status %s, want signed-in", st.State)
	}
}
