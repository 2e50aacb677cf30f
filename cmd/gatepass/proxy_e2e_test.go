package main

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatepass-dev/gatepass/broker/demo"
)

// recorder is an upstream that remembers the Authorization header of
// every request it received.
type recorder struct {
	mu   sync.Mutex
	auth []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	r.mu.Unlock()
	fmt.Fprintf(w, "upstream %s saw %s\n", req.Host, req.URL.Path)
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auth...)
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

// TestE2EProxyWithCurl runs the real `gatepass proxy` and curl against four
// upstreams: a plain-HTTP gateway (listed in plain_http), a TLS gateway, a
// TLS host and an HTTP host that are not gateways. Only the gateways may
// see the token; the proxy's log must never contain it.
func TestE2EProxyWithCurl(t *testing.T) {
	requireKeychain(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed for this test (apt-get install curl)")
	}
	p, err := demo.Start("127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	var plainGW, tlsGW, otherTLS, otherHTTP recorder
	sPlainGW := httptest.NewServer(&plainGW)
	defer sPlainGW.Close()
	sTLSGW := httptest.NewTLSServer(&tlsGW)
	defer sTLSGW.Close()
	sOtherTLS := httptest.NewTLSServer(&otherTLS)
	defer sOtherTLS.Close()
	sOtherHTTP := httptest.NewServer(&otherHTTP)
	defer sOtherHTTP.Close()

	// The upstreams' test CA, trusted by the proxy through SSL_CERT_FILE
	// (Go reads it for the system roots) and by curl through --cacert.
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
	cfg := writeConfig(t, fmt.Sprintf(`
listen = %q
[profiles.%s]
issuer = %q
client_id = %q
client_secret = %q
gateways = [%q, %q]
plain_http = [%q]
inject = "id_token"
`, listen, profile, p.Issuer(), p.ClientID(), p.ClientSecret(),
		hostOf(sPlainGW.URL), hostOf(sTLSGW.URL), hostOf(sPlainGW.URL)))
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

	// The CA the proxy intercepts with, as a user exports it.
	ourCA := filepath.Join(testDir(t), "gatepass-ca.pem")
	if _, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export", "--out", ourCA); code != 0 {
		t.Fatalf("ca export: %s", stderr)
	}
	bothCAs := filepath.Join(testDir(t), "both.pem")
	ca, _ := os.ReadFile(ourCA)
	if err := os.WriteFile(bothCAs, append(ca, pemBytes...), 0o600); err != nil {
		t.Fatal(err)
	}

	curl := func(url string, extra ...string) (string, int) {
		args := append([]string{"-sS", "-o", "-", "-w", "\n%{http_code}", "-x", "http://" + listen, "--cacert", bothCAs,
			"-H", "Authorization: Bearer caller-set-must-be-replaced"}, extra...)
		out, err := exec.Command("curl", append(args, url)...).CombinedOutput()
		if err != nil {
			t.Errorf("curl %s: %v\n%s", url, err, out)
		}
		s := strings.TrimSpace(string(out))
		i := strings.LastIndex(s, "\n")
		var status int
		fmt.Sscanf(s[i+1:], "%d", &status)
		return s[:max(i, 0)], status
	}

	if body, status := curl(sPlainGW.URL + "/plain"); status != 200 || strings.Contains(body, idTok) {
		t.Errorf("plain gateway: %d %q", status, body)
	}
	if body, status := curl(sTLSGW.URL + "/tls"); status != 200 {
		t.Errorf("TLS gateway: %d %q", status, body)
	}
	if _, status := curl(sOtherTLS.URL + "/other"); status != 200 {
		t.Errorf("other TLS host: %d", status)
	}
	if _, status := curl(sOtherHTTP.URL + "/otherhttp"); status != 200 {
		t.Errorf("other HTTP host: %d", status)
	}

	// The gateways got a valid ID token for our client (the agent's own,
	// fresher than the one `gatepass token` printed); the others got the
	// caller's header untouched.
	verifier := oidcVerifier(t, p.Issuer(), p.ClientID())
	var injected []string
	for name, r := range map[string]*recorder{"plain-HTTP gateway": &plainGW, "TLS gateway": &tlsGW} {
		got := r.seen()
		if len(got) != 1 || !strings.HasPrefix(got[0], "Bearer ") {
			t.Errorf("%s received %d requests / no bearer token", name, len(got))
			continue
		}
		tok := strings.TrimPrefix(got[0], "Bearer ")
		if _, err := verifier.Verify(context.Background(), tok); err != nil {
			t.Errorf("%s received a token that does not verify: %v", name, err)
		}
		injected = append(injected, tok)
	}
	for name, r := range map[string]*recorder{"other TLS host": &otherTLS, "other HTTP host": &otherHTTP} {
		if got := r.seen(); len(got) != 1 || got[0] != "Bearer caller-set-must-be-replaced" {
			t.Errorf("%s received Authorization %d times, want the caller's own header once", name, len(got))
		}
	}

	// A status-page request to the proxy port never gets a token.
	resp, err := http.Get("http://" + listen + "/")
	if err == nil {
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		if strings.Contains(string(b[:n]), idTok) {
			t.Errorf("status page shows the token")
		}
	}

	// Clean shutdown on SIGTERM, and a log without the token.
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("gatepass proxy exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("gatepass proxy did not stop within 15s of SIGINT")
	}
	logFile.Close()
	logText, _ := os.ReadFile(logPath)
	for _, tok := range append(injected, idTok) {
		if strings.Contains(string(logText), tok[len(tok)-20:]) {
			t.Errorf("the proxy log contains a token")
		}
	}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(string(logText)))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "proxy request") {
			lines++
		}
	}
	if lines < 4 {
		t.Errorf("expected a log line per request, got %d:\n%s", lines, logText)
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
