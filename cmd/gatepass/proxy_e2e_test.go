package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/zalando/go-keyring"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/broker/demo"
)

// seenRequest is what an upstream received.
type seenRequest struct {
	path, host, auth, proxyAuth string
}

// recorder is an upstream that remembers every request it received. Under /ws
// it is a WebSocket echo (one frame), under /slow it answers after a second.
type recorder struct {
	mu      sync.Mutex
	reqs    []seenRequest
	arrived chan string // the path of each request, as it arrives (buffered)
}

func newRecorder() *recorder { return &recorder{arrived: make(chan string, 64)} }

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, seenRequest{req.URL.Path, req.Host, req.Header.Get("Authorization"), req.Header.Get("Proxy-Authorization")})
	r.mu.Unlock()
	r.arrived <- req.URL.Path
	switch req.URL.Path {
	case "/ws":
		wsEcho(w, req)
		return
	case "/slow":
		time.Sleep(time.Second)
	}
	fmt.Fprintf(w, "upstream %s saw %s\n", req.Host, req.URL.Path)
}

func (r *recorder) seen() []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenRequest(nil), r.reqs...)
}

// wsEcho answers a WebSocket upgrade (RFC 6455) and echoes one client frame.
func wsEcho(w http.ResponseWriter, req *http.Request) {
	if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "want a WebSocket upgrade", http.StatusBadRequest)
		return
	}
	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]))
	brw.Flush()
	payload, err := readWSFrame(brw.Reader, true)
	if err != nil {
		return
	}
	conn.Write(wsFrame(payload, nil))
}

// wsFrame is one final text frame, masked with mask when it is not nil.
func wsFrame(payload, mask []byte) []byte {
	b := []byte{0x81, byte(len(payload))}
	if mask != nil {
		b[1] |= 0x80
		b = append(b, mask...)
	}
	for i, c := range payload {
		if mask != nil {
			c ^= mask[i%4]
		}
		b = append(b, c)
	}
	return b
}

func readWSFrame(r io.Reader, masked bool) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(h[1] & 0x7f)
	if h[0] != 0x81 || n > 125 || (h[1]&0x80 != 0) != masked {
		return nil, fmt.Errorf("unexpected WebSocket frame header %x", h)
	}
	var mask [4]byte
	if masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	if masked {
		for i := range p {
			p[i] ^= mask[i%4]
		}
	}
	return p, nil
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func hostOf(u string) string { return strings.TrimPrefix(strings.TrimPrefix(u, "https://"), "http://") }

// TestE2EProxy runs the real `gatepass proxy` with two real clients, curl and Go's
// net/http with Proxy set (both sending a Proxy-Authorization and an Authorization of
// their own), against four upstreams: a plain-HTTP gateway (listed in plain_http),
// a TLS gateway with its own test CA (which also echoes a WebSocket), and a TLS
// host and an HTTP host that are not gateways. Each upstream's record is checked:
// only the gateways see a token, and a valid one; the others get the caller's own
// header; none sees Proxy-Authorization. Then `gatepass ca path` and `ca export`,
// the log (one line per request, never a token) and a SIGTERM that lets an
// in-flight request finish.
func TestE2EProxy(t *testing.T) {
	requireKeychain(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed for this test (apt-get install curl)")
	}
	p, err := demo.Start("127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	plainGW, tlsGW, otherTLS, otherHTTP := newRecorder(), newRecorder(), newRecorder(), newRecorder()
	sPlainGW := httptest.NewServer(plainGW)
	defer sPlainGW.Close()
	sTLSGW := httptest.NewTLSServer(tlsGW)
	defer sTLSGW.Close()
	sOtherTLS := httptest.NewTLSServer(otherTLS)
	defer sOtherTLS.Close()
	sOtherHTTP := httptest.NewServer(otherHTTP)
	defer sOtherHTTP.Close()

	// The upstreams' test CA, trusted by the proxy through SSL_CERT_FILE
	// (Go reads it for the system roots) and by the clients.
	upstreamCA := filepath.Join(testDir(t), "upstream-ca.pem")
	var pemBytes []byte
	for _, s := range []*httptest.Server{sTLSGW, sOtherTLS} {
		pemBytes = append(pemBytes, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})...)
	}
	if err := os.WriteFile(upstreamCA, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}

	listen := freePort(t)
	profile := uniqueProfile("proxy")
	cfg := gatewayConfig(t, p, profile, listen, []string{hostOf(sPlainGW.URL), hostOf(sTLSGW.URL)}, []string{hostOf(sPlainGW.URL)})
	login(t, cfg)
	t.Cleanup(func() { runGatepass(t, nil, "--config", cfg, "logout") })
	idTok, _, code := runGatepass(t, nil, "--config", cfg, "token")
	if code != 0 {
		t.Fatal("token failed")
	}
	idTok = strings.TrimSpace(idTok)

	// Start the headless agent.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, gatepassBin, "--config", cfg, "proxy")
	cmd.Env = append(testEnv(t), "SSL_CERT_FILE="+upstreamCA)
	logPath := filepath.Join(testDir(t), "proxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitListening(t, listen)

	// The CA the proxy intercepts with, as a user gets it: `ca path` names the file
	// beside the config, `ca export` prints it and `ca export --out` writes it.
	caPath, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "path")
	if code != 0 {
		t.Fatalf("ca path: %s", stderr)
	}
	caPath = strings.TrimSpace(caPath)
	if want := filepath.Join(filepath.Dir(cfg), "gatepass-ca.pem"); caPath != want {
		t.Errorf("ca path printed %q, want %q", caPath, want)
	}
	exported, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export")
	if code != 0 || !strings.HasPrefix(exported, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("ca export: exit %d, stdout %q, stderr %s", code, exported, stderr)
	}
	ourCA := filepath.Join(testDir(t), "exported-ca.pem")
	if _, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export", "--out", ourCA); code != 0 {
		t.Fatalf("ca export --out: %s", stderr)
	}
	ca, _ := os.ReadFile(ourCA)
	atPath, _ := os.ReadFile(caPath)
	if string(ca) != exported || string(atPath) != exported {
		t.Errorf("ca export, ca export --out and the file at ca path differ")
	}
	bothCAs := filepath.Join(testDir(t), "both.pem")
	if err := os.WriteFile(bothCAs, append(ca, pemBytes...), 0o600); err != nil {
		t.Fatal(err)
	}

	const callerAuth = "Bearer caller-set-must-be-replaced"
	curl := func(url string) (string, int) {
		args := []string{"-sS", "-o", "-", "-w", "\n%{http_code}", "-x", "http://" + listen, "-U", "tester:proxy-secret",
			"--cacert", bothCAs, "-H", "Authorization: " + callerAuth, url}
		out, err := exec.Command("curl", args...).CombinedOutput()
		if err != nil {
			t.Errorf("curl %s: %v\n%s", url, err, out)
		}
		s := strings.TrimSpace(string(out))
		i := strings.LastIndex(s, "\n")
		var status int
		fmt.Sscanf(s[i+1:], "%d", &status)
		return s[:max(i, 0)], status
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(append(ca, pemBytes...))
	proxyURL, _ := url.Parse("http://tester:proxy-secret@" + listen)
	goClient := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: roots}}}
	get := func(url string) (string, int) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", callerAuth)
		resp, err := goClient.Do(req)
		if err != nil {
			t.Errorf("Go client %s: %v", url, err)
			return "", 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.StatusCode
	}

	for _, c := range []struct {
		name string
		do   func(string) (string, int)
	}{{"curl", curl}, {"go", get}} {
		for _, u := range []string{sPlainGW.URL + "/" + c.name + "-plain", sTLSGW.URL + "/" + c.name + "-tls",
			sOtherTLS.URL + "/" + c.name + "-other-tls", sOtherHTTP.URL + "/" + c.name + "-other-http"} {
			if body, status := c.do(u); status != 200 || !strings.Contains(body, "saw /") || strings.Contains(body, idTok) {
				t.Errorf("%s %s: %d %q", c.name, u, status, body)
			}
		}
	}

	// A WebSocket through the intercepted TLS gateway: upgraded, echoed, token injected.
	// (Without Client.Timeout: it wraps a 101's body in one that cannot be written.)
	wsCtx, wsCancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer wsCancel()
	wsReq, _ := http.NewRequestWithContext(wsCtx, "GET", sTLSGW.URL+"/ws", nil)
	wsReq.Header.Set("Connection", "Upgrade")
	wsReq.Header.Set("Upgrade", "websocket")
	wsReq.Header.Set("Sec-WebSocket-Version", "13")
	wsReq.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if resp, err := (&http.Client{Transport: goClient.Transport}).Do(wsReq); err != nil {
		t.Errorf("WebSocket upgrade: %v", err)
	} else {
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
			t.Errorf("WebSocket upgrade answered %s %v (body %T)", resp.Status, resp.Header, resp.Body)
		} else {
			if _, err := rwc.Write(wsFrame([]byte("ping through gatepass"), []byte{1, 2, 3, 4})); err != nil {
				t.Errorf("WebSocket write: %v", err)
			}
			if got, err := readWSFrame(rwc, false); err != nil || string(got) != "ping through gatepass" {
				t.Errorf("WebSocket echo: %q, %v", got, err)
			}
		}
		resp.Body.Close()
	}

	// What each upstream received: the gateways a valid ID token for our client (the
	// agent's own, fresher than the one `gatepass token` printed), the others the
	// caller's header untouched; no upstream a Proxy-Authorization, and every one
	// the Host the client asked for.
	verifier := oidcVerifier(t, p.Issuer(), p.ClientID())
	var injected []string
	check := func(name string, r *recorder, srvURL string, wantPaths []string, gateway bool) {
		got := r.seen()
		var paths []string
		for _, q := range got {
			paths = append(paths, q.path)
			if q.proxyAuth != "" {
				t.Errorf("%s received Proxy-Authorization on %s", name, q.path)
			}
			if q.host != hostOf(srvURL) {
				t.Errorf("%s received Host %q on %s, want %q", name, q.host, q.path, hostOf(srvURL))
			}
			if !gateway {
				if q.auth != callerAuth {
					t.Errorf("%s received Authorization %q on %s, want the caller's own", name, q.auth, q.path)
				}
				continue
			}
			tok, ok := strings.CutPrefix(q.auth, "Bearer ")
			if !ok || tok == "caller-set-must-be-replaced" {
				t.Errorf("%s received no injected token on %s: %q", name, q.path, q.auth)
				continue
			}
			if _, err := verifier.Verify(context.Background(), tok); err != nil {
				t.Errorf("%s received a token that does not verify on %s: %v", name, q.path, err)
			}
			injected = append(injected, tok)
		}
		if !slices.Equal(paths, wantPaths) {
			t.Errorf("%s received %v, want %v", name, paths, wantPaths)
		}
	}
	check("plain-HTTP gateway", plainGW, sPlainGW.URL, []string{"/curl-plain", "/go-plain"}, true)
	check("TLS gateway", tlsGW, sTLSGW.URL, []string{"/curl-tls", "/go-tls", "/ws"}, true)
	check("other TLS host", otherTLS, sOtherTLS.URL, []string{"/curl-other-tls", "/go-other-tls"}, false)
	check("other HTTP host", otherHTTP, sOtherHTTP.URL, []string{"/curl-other-http", "/go-other-http"}, false)

	// A status-page request to the proxy port never gets a token.
	if resp, err := http.Get("http://" + listen + "/"); err != nil {
		t.Errorf("status page: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(string(b), idTok) {
			t.Errorf("status page: %s, shows the token: %v", resp.Status, strings.Contains(string(b), idTok))
		}
	}

	// SIGTERM while a request is in flight: it is answered in full, then the agent exits 0.
	slow := make(chan error, 1)
	go func() {
		body, status := get(sPlainGW.URL + "/slow")
		if status != 200 || !strings.Contains(body, "saw /slow") {
			slow <- fmt.Errorf("in-flight request during shutdown: %d %q", status, body)
			return
		}
		slow <- nil
	}()
waitSlow:
	for {
		select {
		case path := <-plainGW.arrived:
			if path == "/slow" {
				break waitSlow
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the slow request never reached the upstream")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("gatepass proxy exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("gatepass proxy did not stop within 15s of SIGTERM")
	}
	if err := <-slow; err != nil {
		t.Error(err)
	}

	// The log: one line per request with method, host, path, status, injected and
	// duration, and no token anywhere.
	logFile.Close()
	logText, _ := os.ReadFile(logPath)
	for _, tok := range append(injected, idTok) {
		if strings.Contains(string(logText), tok[len(tok)-20:]) {
			t.Errorf("the proxy log contains a token")
		}
	}
	// The command's own lines keep their place among the buffered log lines: the
	// new CA (start-up) before "listening", the requests before "shutting down".
	at := func(s string) int { return strings.Index(string(logText), s) }
	if ca, listening, down := at("generated a new local CA"), at("gatepass proxy listening"), at("shutting down"); ca < 0 || ca > listening || at("path=/go-other-http") > down {
		t.Errorf("log out of order (new CA at %d, listening at %d, last request before the signal at %d, shutting down at %d):\n%s",
			ca, listening, at("path=/go-other-http"), down, logText)
	}
	perPath := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(string(logText)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "proxy request") {
			continue
		}
		for _, f := range []string{"method=", "host=", "path=", "status=", "injected=", "duration="} {
			if !strings.Contains(line, " "+f) {
				t.Errorf("log line without %s: %s", f, line)
			}
		}
		if _, rest, ok := strings.Cut(line, " path="); ok {
			perPath[strings.Fields(rest)[0]]++
		}
	}
	for _, path := range []string{"/curl-plain", "/go-plain", "/curl-tls", "/go-tls", "/ws", "/curl-other-http", "/go-other-http", "/slow"} {
		if perPath[path] != 1 {
			t.Errorf("%d log lines for %s, want 1; the log:\n%s", perPath[path], path, logText)
		}
	}
}

func oidcVerifier(t *testing.T, issuer, clientID string) *oidc.IDTokenVerifier {
	t.Helper()
	prov, err := oidc.NewProvider(context.Background(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	return prov.Verifier(&oidc.Config{ClientID: clientID})
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after 30s", addr)
}

// TestE2ECACorruptKeychainEntry: a local CA entry in the keychain that is not what
// gatepass wrote is replaced by a new CA, and the command says so and why; the next
// command uses the new CA without a word.
func TestE2ECACorruptKeychainEntry(t *testing.T) {
	requireKeychain(t)
	cfg := writeConfig(t, fmt.Sprintf("[profiles.%s]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x.apps.googleusercontent.com\"\nclient_secret = \"s\"\ngateways = [\"api.team.example\"]\n", uniqueProfile("ca")))
	account := newKeychainCA(broker.SystemKeychain{}, &broker.Config{Path: cfg}).account
	t.Cleanup(func() { _ = keyring.Delete(caService, account) })

	first, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export")
	if code != 0 || !strings.Contains(stderr, "generated a new local CA") || !strings.Contains(stderr, "no CA stored yet") {
		t.Fatalf("first ca export: exit %d, stderr %s", code, stderr)
	}
	if err := keyring.Set(caService, account, `{"cert": "-----BEGIN CERT`); err != nil {
		t.Fatal(err)
	}
	second, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export")
	if code != 0 || !strings.Contains(stderr, "generated a new local CA") || !strings.Contains(stderr, "corrupt") ||
		!strings.Contains(stderr, "gatepass ca export") {
		t.Fatalf("ca export over a corrupt entry: exit %d, stderr %s", code, stderr)
	}
	if second == first || !strings.HasPrefix(second, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("the CA was not replaced")
	}
	raw, err := keyring.Get(caService, account)
	if err != nil || !strings.Contains(raw, `"cert"`) || !strings.Contains(raw, "PRIVATE KEY") {
		t.Errorf("keychain entry after the repair: %v, %.40q", err, raw)
	}
	third, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export")
	if code != 0 || third != second || stderr != "" {
		t.Errorf("third ca export: exit %d, same CA %v, stderr %q", code, third == second, stderr)
	}
}

// TestE2EProxyStartWhileRefreshing: the agent's first refresh may still run when the
// proxy starts listening; a signed-in profile is then "refreshing", which is no reason
// to tell the user to sign in (it did, three starts in four).
func TestE2EProxyStartWhileRefreshing(t *testing.T) {
	p, _, profile := demoSetup(t, demo.Options{})
	listen := freePort(t)
	cfg := demoConfig(t, p, profile, fmt.Sprintf("listen = %q", listen))
	login(t, cfg)
	p.SetDelay("token", 3*time.Second) // the start-up refresh is still out when the proxy listens

	out := startAgent(t, cfg)
	waitListening(t, listen)
	time.Sleep(200 * time.Millisecond) // the start-up lines follow the listen
	if s := out.String(); !strings.Contains(s, "listening on") || strings.Contains(s, "login --profile") {
		t.Errorf("start-up of a signed-in profile:\n%s", s)
	}
}

// TestE2EProxyPortTaken: a taken listen port is said first, naming the port (and the
// program when it can be found), before anything is created: no local CA appears for
// a proxy that never ran. doctor says the same.
func TestE2EProxyPortTaken(t *testing.T) {
	p, _, profile := demoSetup(t, demo.Options{})
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	_, port, _ := net.SplitHostPort(holder.Addr().String())
	cfg := demoConfig(t, p, profile, fmt.Sprintf("listen = %q", holder.Addr().String()))

	_, stderr, code := runGatepass(t, nil, "--config", cfg, "proxy")
	if code != exitFailure || !strings.Contains(stderr, "port "+port+" is already in use") || strings.Contains(stderr, "local CA") {
		t.Errorf("proxy on a taken port: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "gatepass-ca.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a local CA was written for a proxy that could not listen (%v)", err)
	}
	out, _, code := runGatepass(t, nil, "--config", cfg, "doctor")
	if code != exitFailure || !strings.Contains(out, "FAIL  proxy") || !strings.Contains(out, "port "+port+" is already in use") {
		t.Errorf("doctor with the port taken: exit %d\n%s", code, out)
	}
	// The same port given with --listen: the fix names both places an address comes from.
	free := demoConfig(t, p, profile, fmt.Sprintf("listen = %q", freePort(t)))
	_, stderr, code = runGatepass(t, nil, "--config", free, "proxy", "--listen", holder.Addr().String())
	if code != exitFailure || !strings.Contains(stderr, "port "+port+" is already in use") || !strings.Contains(stderr, "or --listen") {
		t.Errorf("proxy --listen on a taken port: exit %d, stderr %q", code, stderr)
	}

	// An agent already running for the config holds its port: that is said, not the port,
	// whose fix (another address) would only run into the agent next.
	listen := freePort(t)
	running := demoConfig(t, p, profile, fmt.Sprintf("listen = %q", listen))
	startAgent(t, running)
	waitListening(t, listen)
	_, stderr, code = runGatepass(t, nil, "--config", running, "proxy")
	if code != exitFailure || !strings.Contains(stderr, "another gatepass agent is already running for this config") ||
		!strings.Contains(stderr, "with its proxy on "+listen) || strings.Contains(stderr, "already in use") {
		t.Errorf("proxy beside a running agent of the config: exit %d, stderr %q", code, stderr)
	}
}

// TestE2EProxySignInHintNamesConfig: the 401 of a proxy started on a config
// that is not the default one tells the command that signs in for that config
// (a shell without $GATEPASS_CONFIG would otherwise sign in elsewhere).
func TestE2EProxySignInHintNamesConfig(t *testing.T) {
	p, _, profile := demoSetup(t, demo.Options{})
	listen := freePort(t)
	cfg := gatewayConfig(t, p, profile, listen, []string{"127.0.0.1:9"}, []string{"127.0.0.1:9"})
	agentOut := startAgent(t, cfg)
	waitListening(t, listen)
	// Its start-up lines name the config too.
	startHint := "profile " + profile + " is not signed in: run `gatepass --config " + app.ShellQuote(cfg) + " login --profile " + profile + "`"
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(agentOut.String(), startHint) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(agentOut.String(), startHint) {
		t.Errorf("the agent's start-up output lacks %q:\n%s", startHint, agentOut.String())
	}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: listen})}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://127.0.0.1:9/orders")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error, Profile, Hint string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	want := "run gatepass --config " + cfg + " login --profile " + profile
	if resp.StatusCode != http.StatusUnauthorized || body.Error != "sign_in_required" || body.Hint != want {
		t.Errorf("%d %+v; want 401 with hint %q", resp.StatusCode, body, want)
	}
}

// gatewayConfig writes a config whose one profile, on the demo provider p,
// injects its ID token for gateways (plainHTTP of them over plain HTTP), with
// the proxy on listen.
func gatewayConfig(t *testing.T, p *demo.Provider, profile, listen string, gateways, plainHTTP []string) string {
	t.Helper()
	list := func(xs []string) string {
		q := make([]string, len(xs))
		for i, x := range xs {
			q[i] = strconv.Quote(x)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return writeConfig(t, fmt.Sprintf(`
listen = %q
[profiles.%s]
issuer = %q
client_id = %q
client_secret = %q
gateways = %s
plain_http = %s
inject = "id_token"
`, listen, profile, p.Issuer(), p.ClientID(), p.ClientSecret(), list(gateways), list(plainHTTP)))
}

// TestE2EProxyGatewayOverride: one sign-in serves a gateway that takes the ID token
// and one that takes the access token in Proxy-Authorization, as Google IAP reads it
// when the app behind it needs Authorization itself ([profiles.NAME.overrides."HOST"]
// inject and header): the real `gatepass proxy` sends each its kind, as `gatepass
// token --type` prints them, and leaves that app's own Authorization alone.
func TestE2EProxyGatewayOverride(t *testing.T) {
	p, _, profile := demoSetup(t, demo.Options{})
	idGW, accGW := newRecorder(), newRecorder()
	sID, sAcc := httptest.NewServer(idGW), httptest.NewServer(accGW)
	defer sID.Close()
	defer sAcc.Close()
	listen := freePort(t)
	gws := []string{hostOf(sID.URL), hostOf(sAcc.URL)}
	cfg := gatewayConfig(t, p, profile, listen, gws, gws)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[profiles.%s.overrides.%q]\ninject = \"access_token\"\nheader = \"Proxy-Authorization\"\n", profile, hostOf(sAcc.URL))
	_ = f.Close()
	login(t, cfg)
	_, out, _ := agentCmd(t, cfg)
	waitListening(t, listen)
	tokens := map[string]string{}
	for _, kind := range []string{"id", "access"} {
		tok, stderr, code := runGatepass(t, nil, "--config", cfg, "token", "--type", kind)
		if code != 0 {
			t.Fatalf("token --type %s: %s", kind, stderr)
		}
		tokens[kind] = strings.TrimSpace(tok)
	}
	proxyURL, _ := url.Parse("http://" + listen)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	for _, s := range []*httptest.Server{sID, sAcc} {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/x", nil)
		req.Header.Set("Authorization", "Bearer app-own")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s through the proxy: %d\n%s", s.URL, resp.StatusCode, out)
		}
	}
	if seen := idGW.seen(); len(seen) != 1 || seen[0].auth != "Bearer "+tokens["id"] || seen[0].proxyAuth != "" {
		t.Errorf("the ID-token gateway got %d requests; the first with the ID token in Authorization (replacing the caller's): %v",
			len(seen), len(seen) > 0 && seen[0].auth == "Bearer "+tokens["id"] && seen[0].proxyAuth == "")
	}
	if seen := accGW.seen(); len(seen) != 1 || seen[0].proxyAuth != "Bearer "+tokens["access"] || seen[0].auth != "Bearer app-own" {
		t.Errorf("the overridden gateway got %d requests; the first with the access token in Proxy-Authorization and the caller's Authorization: %v",
			len(seen), len(seen) > 0 && seen[0].proxyAuth == "Bearer "+tokens["access"] && seen[0].auth == "Bearer app-own")
	}
	if tokens["id"] == tokens["access"] {
		t.Fatal("the demo's ID and access tokens are the same: the test cannot tell them apart")
	}
	// status --json names the override.
	js, _, _ := runGatepass(t, nil, "--config", cfg, "status", "--json")
	var doc struct {
		Profiles []broker.ProfileStatus `json:"profiles"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil || len(doc.Profiles) != 1 || doc.Profiles[0].Overrides[hostOf(sAcc.URL)] != (broker.Override{Inject: broker.AccessToken, Header: "Proxy-Authorization"}) || len(doc.Profiles[0].Overrides) != 1 {
		t.Errorf("status --json: %v\n%s", err, js)
	}
}
