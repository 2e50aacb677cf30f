package broker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker/demo"
	"github.com/gatepass-dev/gatepass/internal/peer"
)

// The sign-in's loopback listener serves only this user's processes (and root's), and
// the browser is opened at a start address that redirects to the authorization URL, so
// that URL's state never reaches an opener's command line. Tests set who "holds" a
// client's end with Broker.peerOwner; login_peer_linux_test.go runs the real lookup
// against curl started as another user.

// switchOwner is an owner lookup that says every connection is held by uid (or fails
// with err), as the test sets it. It starts as this process's user, so the sign-in's
// probe finds the check working.
type switchOwner struct {
	mu  sync.Mutex
	uid uint32
	err error
}

func newSwitchOwner() *switchOwner { return &switchOwner{uid: peer.Self()} }

func (o *switchOwner) set(uid uint32, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.uid, o.err = uid, err
}

func (o *switchOwner) owner(net.Conn) (uint32, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.uid, o.err
}

// peerEnv is a test environment whose broker logs to the returned buffer and asks
// the returned switchOwner who holds each client's end.
func peerEnv(t *testing.T) (*testEnv, *syncBuffer, *switchOwner) {
	t.Helper()
	e := newEnv(t, demo.Options{})
	logs := &syncBuffer{}
	e.b.deps.Log = slog.New(slog.NewTextHandler(logs, nil))
	o := newSwitchOwner()
	e.b.peerOwner = o.owner
	return e, logs, o
}

// noRedirects is a client that returns redirects instead of following them.
var noRedirects = &http.Client{
	Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// get sends one request to the loopback listener and reads the answer.
func get(t *testing.T, method, target string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, hostPath(target), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// hostPath drops a URL's query, which may hold the state, from failure messages.
func hostPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// authorizationURL asks the start address where it sends a browser of this user.
func authorizationURL(t *testing.T, startURL string) *url.URL {
	t.Helper()
	resp, body := get(t, http.MethodGet, startURL)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start address answered %d, want 302 to the issuer:\n%s", resp.StatusCode, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || u.Query().Get("state") == "" {
		t.Fatalf("start address redirects to %q (%v), want the authorization URL", hostPath(resp.Header.Get("Location")), err)
	}
	return u
}

// assertNoAuthParams fails if text holds an authorization request's parameters or
// the values of its secrets.
func assertNoAuthParams(t *testing.T, what, text string, q url.Values) {
	t.Helper()
	for _, p := range []string{"state=", "nonce=", "code_challenge="} {
		if strings.Contains(text, p) {
			t.Errorf("%s contains %q:\n%s", what, p, text)
		}
	}
	for _, p := range []string{"state", "nonce", "code_challenge"} {
		if v := q.Get(p); v != "" && strings.Contains(text, v) {
			t.Errorf("%s contains the %s's value:\n%s", what, p, text)
		}
	}
}

// startLogin runs Login in the background with a browser that only records the
// address it is given, and returns that address and Login's result.
func startLogin(t *testing.T, e *testEnv, opts LoginOptions) (string, <-chan error) {
	t.Helper()
	br := &urlBrowser{urls: make(chan string, 1)}
	opts.Browser = br
	if opts.Timeout == 0 {
		opts.Timeout = 20 * time.Second
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.b.Login(context.Background(), testProfile, opts)
		done <- err
	}()
	return br.next(t), done
}

// assertWaiting fails unless the sign-in is still waiting for the browser, with no
// code exchanged.
func assertWaiting(t *testing.T, e *testEnv, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("Login returned (%v) after a refused request, want it still waiting", err)
	case <-time.After(200 * time.Millisecond):
	}
	if st, _ := e.b.Status(testProfile); st.State != StateSigningIn {
		t.Fatalf("state %s after a refused request, want signing-in", st.State)
	}
	if n := e.idp.Stats().CodeExchanges; n != 0 {
		t.Fatalf("%d code exchanges after refused requests, want none", n)
	}
}

// TestLoginRefusesAnotherUsersRedirect: a redirect with the right state from another
// user's process is answered 403 and neither finishes nor cancels the sign-in, which
// a later redirect from this user's browser completes.
func TestLoginRefusesAnotherUsersRedirect(t *testing.T) {
	t.Parallel()
	e, logs, o := peerEnv(t)
	var prompt syncBuffer
	startURL, done := startLogin(t, e, LoginOptions{Prompt: &prompt})
	au := authorizationURL(t, startURL)
	state := au.Query().Get("state")
	callback := au.Query().Get("redirect_uri")

	other := peer.Self() + 4242
	o.set(other, nil)
	for _, req := range []struct{ method, target string }{
		{http.MethodGet, callback + "?" + url.Values{"state": {state}, "code": {"4/0attackers-code"}}.Encode()},
		{http.MethodGet, callback + "?" + url.Values{"state": {state}, "error": {"access_denied"}}.Encode()},
		{http.MethodGet, startURL},
		{http.MethodPost, callback + "?" + url.Values{"state": {state}, "code": {"4/0attackers-code"}}.Encode()},
		{http.MethodGet, strings.TrimSuffix(startURL, "/") + "/favicon.ico"},
	} {
		resp, body := get(t, req.method, req.target)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "belongs to another user") ||
			!strings.Contains(body, peer.UserName(other)) || resp.Header.Get("Location") != "" {
			t.Fatalf("%s %s from uid %d: %d (Location %q), want 403 saying the sign-in belongs to another user:\n%s",
				req.method, hostPath(req.target), other, resp.StatusCode, hostPath(resp.Header.Get("Location")), body)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("refusal's Cache-Control %q, want no-store", cc)
		}
		assertNoAuthParams(t, "the refusal page", body, au.Query())
	}
	// A client whose owner the system cannot tell is refused too.
	o.set(0, peer.ErrGone)
	if resp, body := get(t, http.MethodGet, callback+"?"+url.Values{"state": {state}, "error": {"access_denied"}}.Encode()); resp.StatusCode != http.StatusForbidden ||
		!strings.Contains(body, "could not tell who sent") {
		t.Fatalf("callback from an unknown owner: %d, want 403:\n%s", resp.StatusCode, body)
	}
	assertWaiting(t, e, done)
	if l := logs.String(); strings.Count(l, "sign-in redirect refused") != 2 || !strings.Contains(l, peer.UserName(other)) {
		t.Errorf("log, want one refusal line for uid %d and one for the unknown owner:\n%s", other, l)
	} else {
		assertNoAuthParams(t, "the log", l, au.Query())
	}

	// Root's processes are trusted, then this user's browser finishes the sign-in.
	o.set(0, nil)
	if resp, body := get(t, http.MethodGet, callback+"?state=wrong"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback from root with a wrong state: %d, want 400 (served):\n%s", resp.StatusCode, body)
	}
	o.set(peer.Self(), nil)
	if r := browse(t, startURL, true); r.err != nil || r.status != http.StatusOK || !strings.Contains(r.body, "dev@example.test") {
		t.Fatalf("this user's browser: %d %v:\n%s", r.status, r.err, r.body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v", err)
	}
	if st, _ := e.b.Status(testProfile); st.State != StateSignedIn || st.Email != "dev@example.test" {
		t.Fatalf("status %+v, want signed in as dev@example.test", st)
	}
	if n := e.idp.Stats().CodeExchanges; n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}
}

// TestLoginOpenerGetsNoSecret: the browser command's argv carries the start address,
// never the authorization request's state, nonce or PKCE challenge (any local user can
// read a process's command line in /proc/PID/cmdline); nor does the prompt.
func TestLoginOpenerGetsNoSecret(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("the opener here is a shell script")
	}
	e := newEnv(t, demo.Options{})
	argvFile := filepath.Join(t.TempDir(), "argv")
	// sh -c SCRIPT opener URL: the script writes $0 and the URL, one a line.
	br := CommandBrowser{Argv: []string{"/bin/sh", "-c", `printf '%s\n' "$0" "$@" > "` + argvFile + `"`, "opener"}}
	var prompt syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: br, Prompt: &prompt, Timeout: 20 * time.Second})
		done <- err
	}()
	var argv []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(argvFile); err == nil && strings.HasSuffix(string(b), "\n") {
			argv = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			break
		}
	}
	if len(argv) != 2 || argv[0] != "opener" {
		t.Fatalf("the browser command got %d arguments, want the opener and one URL", len(argv))
	}
	u, err := url.Parse(argv[1])
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() == "" || u.Path != "/" || u.RawQuery != "" {
		t.Fatalf("the browser command got %s with a query of %d bytes, want the start address http://127.0.0.1:PORT/", hostPath(argv[1]), len(u.RawQuery))
	}
	if r := browse(t, argv[1], true); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("browsing the opened address: %d %v", r.status, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v", err)
	}
	q := e.idp.Stats().LastAuthParams
	assertNoAuthParams(t, "the browser command's argv", strings.Join(argv, " "), q)
	assertNoAuthParams(t, "the prompt", prompt.String(), q)
	if !strings.Contains(prompt.String(), argv[1]) {
		t.Errorf("the prompt does not show the start address %s:\n%s", argv[1], prompt.String())
	}
}

// TestLoginStartAddressRedirects: the start address sends this user's browser on to
// the authorization URL of this very sign-in (its state is the one the callback takes),
// uncached and without a Referer.
func TestLoginStartAddressRedirects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	e.b.peerOwner = newSwitchOwner().owner
	startURL, done := startLogin(t, e, LoginOptions{})

	resp, body := get(t, http.MethodGet, startURL)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("start address: %d %v, want 302 with Cache-Control: no-store and Referrer-Policy: no-referrer:\n%s", resp.StatusCode, resp.Header, body)
	}
	au := authorizationURL(t, startURL)
	issuer, _ := url.Parse(e.idp.Issuer())
	q := au.Query()
	if au.Host != issuer.Host || au.Path != "/authorize" || q.Get("client_id") != e.idp.ClientID() ||
		q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || len(q.Get("nonce")) < 22 {
		t.Fatalf("start address redirects to %s with %v, want the issuer's authorization endpoint with PKCE and a nonce", hostPath(au.String()), q)
	}
	start, _ := url.Parse(startURL)
	if ru, err := url.Parse(q.Get("redirect_uri")); err != nil || ru.Host != start.Host || ru.Path != "/callback" {
		t.Fatalf("redirect_uri %q, want /callback on the start address's listener %s", q.Get("redirect_uri"), start.Host)
	}
	if again := authorizationURL(t, startURL); again.String() != au.String() {
		t.Fatal("a second visit of the start address redirects elsewhere")
	}
	if resp, _ := get(t, http.MethodPost, startURL); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST to the start address: %d, want 405", resp.StatusCode)
	}
	// The state is this sign-in's: the callback takes the issuer's answer to it.
	if r := browse(t, au.String(), true); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("browsing the authorization URL: %d %v:\n%s", r.status, r.err, r.body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v", err)
	}
	if got := e.idp.Stats().LastAuthParams.Get("state"); got != q.Get("state") {
		t.Fatal("the issuer saw another state than the start address's redirect carried")
	}
}

// TestLoginLetsInRedirectFromOutsideTheSystem: a redirect whose client is no socket of
// this machine at all (WSL2's mirrored networking brings the Windows browser's this
// way) is let in, as where the system cannot tell, and said once in the log.
func TestLoginLetsInRedirectFromOutsideTheSystem(t *testing.T) {
	t.Parallel()
	e, logs, o := peerEnv(t)
	startURL, done := startLogin(t, e, LoginOptions{})
	o.set(0, peer.ErrExternal)
	if r := browse(t, startURL, true); r.err != nil || r.status != http.StatusOK || !strings.Contains(r.body, "dev@example.test") {
		t.Fatalf("a browser from outside the system: %d %v:\n%s", r.status, r.err, r.body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v", err)
	}
	if n := strings.Count(logs.String(), "from outside this system let in"); n != 1 {
		t.Errorf("%d log lines for the outside client, want 1:\n%s", n, logs.String())
	}
}
