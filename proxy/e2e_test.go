package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestEndToEndGoClient(t *testing.T) {
	e := newEnv(t)
	c := e.client()

	t.Run("plain-HTTP gateway listed in plain_http gets the token", func(t *testing.T) {
		resp, body := get(t, c, e.plainGWURL()+"/p?q=1;x", "Authorization", "Bearer caller-own", "Proxy-Authorization", "Basic cHJveHk6cHc=", "X-Custom", "kept")
		if resp.StatusCode != 200 || body != "hello from plain-gateway" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		r := last(t, e.plainGW)
		onlyToken(t, r, e.src.current())
		if r.Header.Get("Proxy-Authorization") != "" || r.Header.Get("Proxy-Connection") != "" {
			t.Errorf("proxy headers went upstream: %v", r.Header)
		}
		if r.Header.Get("X-Custom") != "kept" || r.URI != "/p?q=1;x" {
			t.Errorf("request not passed faithfully: %s", r)
		}
	})

	t.Run("TLS gateway is intercepted, injected and forwarded over verified TLS (HTTP/2)", func(t *testing.T) {
		resp, body := get(t, c, e.tlsGWURL()+"/secure", "Authorization", "Bearer caller-own", "Proxy-Authorization", "Basic cHJveHk6cHc=")
		if resp.StatusCode != 200 || body != "hello from tls-gateway" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if iss := resp.TLS.PeerCertificates[0].Issuer.CommonName; !strings.HasPrefix(iss, "gatepass local CA") {
			t.Errorf("client saw a certificate from %q, want gatepass's CA", iss)
		}
		r := last(t, e.tlsGW)
		onlyToken(t, r, e.src.current())
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("Proxy-Authorization went upstream")
		}
		if r.Proto != "HTTP/2.0" {
			t.Errorf("upstream protocol = %s, want HTTP/2.0 (the upstream offers h2)", r.Proto)
		}
		if resp.Header.Get("X-Upstream") != "tls-gateway" {
			t.Errorf("upstream response headers not passed back: %v", resp.Header)
		}
	})

	t.Run("non-gateway TLS host gets a blind tunnel", func(t *testing.T) {
		resp, body := get(t, c, e.otherTLSURL()+"/x", "Authorization", "Bearer caller-own")
		if resp.StatusCode != 200 || body != "hello from other-tls" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if !resp.TLS.PeerCertificates[0].Equal(mustParse(t, e.pki.cert.Certificate[0])) {
			t.Errorf("client did not see the upstream's own certificate")
		}
		if got := last(t, e.otherTLS).Header.Get("Authorization"); got != "Bearer caller-own" {
			t.Errorf("upstream Authorization = %q, want the caller's own, untouched", got)
		}
	})

	t.Run("non-gateway HTTP host is forwarded untouched", func(t *testing.T) {
		resp, body := get(t, c, e.otherHTTPURL()+"/y", "Authorization", "Bearer caller-own", "Proxy-Authorization", "Basic x")
		if resp.StatusCode != 200 || body != "hello from other-http" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		r := last(t, e.otherHTTP)
		if r.Header.Get("Authorization") != "Bearer caller-own" || r.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("upstream headers: %v", r.Header)
		}
	})

	t.Run("plain HTTP to a TLS-only gateway is refused, nothing sent", func(t *testing.T) {
		before := len(e.tlsGW.requests())
		resp, body := get(t, c, "http://localhost:"+e.tlsGW.port()+"/z")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "https://") {
			t.Fatalf("got %d %q, want 403 saying use https://", resp.StatusCode, body)
		}
		var eb errorBody
		if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error != "https_required" {
			t.Errorf("body %q: %v", body, err)
		}
		if len(e.tlsGW.requests()) != before {
			t.Errorf("the gateway received a plain-HTTP request")
		}
	})

	t.Run("https absolute-form to a gateway is injected", func(t *testing.T) {
		resp := rawRequest(t, e.srv.Addr(), "GET "+e.tlsGWURL()+"/abs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer caller-own\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(resp, "HTTP/1.1 200") {
			t.Fatalf("got %q", resp)
		}
		onlyToken(t, last(t, e.tlsGW), e.src.current())
	})
}

// TestCallerAuthorizationReplaced: a caller that sends its own Authorization to a
// gateway has it replaced by the token on every path that injects: the fast path,
// net/http's path (TE, chunked and large uploads, which the fast path declines) and
// an intercepted HTTP/2 gateway. The gateway gets exactly one value, the token.
func TestCallerAuthorizationReplaced(t *testing.T) {
	e := newEnv(t)
	gw := "localhost:" + e.plainGW.port()
	c, br := dialProxy(t, e)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	big := strings.Repeat("u", fastMaxBody+1)
	const own = "Authorization: Bearer caller-own\r\n"
	for _, tc := range []struct {
		name, uri, head, body string
		fast                  bool
	}{
		{"fast path", "/fast", "GET http://" + gw + "/fast HTTP/1.1\r\nHost: " + gw + "\r\n" + own + "\r\n", "", true},
		{"TE: trailers", "/te", "GET http://" + gw + "/te HTTP/1.1\r\nHost: " + gw + "\r\n" + own + "Te: trailers\r\n\r\n", "", false},
		{"chunked upload", "/chunked", "POST http://" + gw + "/chunked HTTP/1.1\r\nHost: " + gw + "\r\n" + own + "Transfer-Encoding: chunked\r\n\r\n", "2\r\nhi\r\n0\r\n\r\n", false},
		{"large upload", "/large", "POST http://" + gw + "/large HTTP/1.1\r\nHost: " + gw + "\r\n" + own + "Content-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n", big, false},
	} {
		fast := e.srv.fastServed.Load()
		io.WriteString(c, tc.head+tc.body)
		method, _, _ := strings.Cut(tc.head, " ")
		if resp, body := readResponse(t, br, method); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %q", tc.name, resp.StatusCode, body)
		}
		if got := e.srv.fastServed.Load() - fast; (got == 1) != tc.fast {
			t.Errorf("%s: fast path served %d, want fast=%v (the case tests the wrong path)", tc.name, got, tc.fast)
		}
		r := last(t, e.plainGW)
		if r.URI != tc.uri {
			t.Fatalf("%s: the gateway's last request is %s, want %s", tc.name, r.URI, tc.uri)
		}
		onlyToken(t, r, e.src.current())
	}

	// An intercepted gateway whose upstream speaks HTTP/2: http.Transport's path.
	cl := e.client()
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(method, e.tlsGWURL()+"/h2-"+method, io.NopCloser(strings.NewReader(big)))
		req.Header.Set("Authorization", "Bearer caller-own")
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r := last(t, e.tlsGW)
		if resp.StatusCode != 200 || r.URI != "/h2-"+method || r.Proto != "HTTP/2.0" {
			t.Fatalf("%s: %d, the gateway's last request %s over %s; want 200, /h2-%s over HTTP/2.0", method, resp.StatusCode, r.URI, r.Proto, method)
		}
		onlyToken(t, r, e.src.current())
	}
	checkNoCanary(t, e.logs.String())
}

func TestInterceptedKeepAlive(t *testing.T) {
	e := newEnv(t)
	c, dials := e.countingClient()
	for i := range 20 {
		resp, body := get(t, c, fmt.Sprintf("%s/n%d", e.tlsGWURL(), i))
		if resp.StatusCode != 200 || body != "hello from tls-gateway" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("client opened %d connections to the proxy for 20 sequential requests, want 1 (keep-alive inside the tunnel)", n)
	}
	reqs := e.tlsGW.requests()
	if len(reqs) != 20 {
		t.Fatalf("upstream got %d requests", len(reqs))
	}
	for _, r := range reqs {
		if r.Header.Get("Authorization") != "Bearer "+e.src.current() {
			t.Fatalf("request %s without the token", r.URI)
		}
	}
	if n := e.srv.ca.signedCount(); n != 1 {
		t.Errorf("signed %d leaf certificates, want 1", n)
	}
}

// TestInterceptedLeafCached: two separate intercepted connections (two CONNECTs,
// two full TLS handshakes, no session resumption) to the same gateway get the same
// leaf, signed once by gatepass's CA.
func TestInterceptedLeafCached(t *testing.T) {
	e := newEnv(t)
	host := "localhost:" + e.tlsGW.port()
	var leaves [][]byte
	for i := range 2 {
		tc, br := openTunnel(t, e, host)
		if tc.ConnectionState().DidResume {
			t.Fatalf("connection %d resumed a TLS session: its handshake asked for no certificate", i)
		}
		leaves = append(leaves, tc.ConnectionState().PeerCertificates[0].Raw)
		fmt.Fprintf(tc, "GET /leaf-%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", i, host)
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 {
			t.Fatalf("connection %d: %d %q", i, resp.StatusCode, body)
		}
		tc.Close()
	}
	if n := e.srv.ca.signedCount(); n != 1 {
		t.Errorf("signed %d leaf certificates for two connections to %s, want 1 (cached)", n, host)
	}
	if string(leaves[0]) != string(leaves[1]) {
		t.Errorf("the two connections saw different leaf certificates, want the cached one")
	}
}

func TestSignInRequired(t *testing.T) {
	e := newEnv(t)
	e.src.signIn["work"] = true
	c := e.client()
	for name, u := range map[string]string{"plain gateway": e.plainGWURL() + "/a", "intercepted gateway": e.tlsGWURL() + "/a"} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			resp, body := get(t, c, u)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v: a sign-in-required answer must be immediate", d)
			}
			var got map[string]string
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if got["error"] != "sign_in_required" || got["profile"] != "work" || got["hint"] != "run gatepass login --profile work" {
				t.Errorf("body = %v", got)
			}
		})
	}
	if n := len(e.plainGW.requests()) + len(e.tlsGW.requests()); n != 0 {
		t.Errorf("gateways received %d requests without a token", n)
	}
}

func TestTokenErrorIs503(t *testing.T) {
	e := newEnv(t)
	e.src.fail = fmt.Errorf("issuer unreachable: dial tcp: connection refused")
	resp, body := get(t, e.client(), e.plainGWURL())
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "issuer unreachable") || !strings.Contains(body, "token_unavailable") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

func TestCallerProxyAuthorizationHeaderForIAP(t *testing.T) {
	e := newEnv(t)
	e.src.header = "Proxy-Authorization"
	get(t, e.client(), e.tlsGWURL()+"/iap", "Authorization", "Bearer app-own", "Proxy-Authorization", "Basic caller")
	r := last(t, e.tlsGW)
	if r.Header.Get("Proxy-Authorization") != "Bearer "+e.src.current() || r.Header.Get("Authorization") != "Bearer app-own" {
		t.Errorf("IAP headers upstream: %v", r.Header)
	}
	get(t, e.client(), e.plainGWURL()+"/iap", "Authorization", "Bearer app-own", "Proxy-Authorization", "Basic caller")
	r = last(t, e.plainGW)
	if r.Header.Get("Proxy-Authorization") != "Bearer "+e.src.current() || r.Header.Get("Authorization") != "Bearer app-own" {
		t.Errorf("IAP headers upstream (plain): %v", r.Header)
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	e := newEnv(t)
	dead := closedPort(t)
	e.src.add("localhost:"+dead, Gateway{Profile: "work", PlainHTTP: true})
	deadTLS := closedPort(t)
	e.src.add("localhost:"+deadTLS, Gateway{Profile: "work"})
	c := e.client()

	resp, body := get(t, c, "http://localhost:"+dead+"/")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "upstream_unreachable") || !strings.Contains(body, "refused") ||
		!strings.Contains(body, "check that the upstream is running") {
		t.Errorf("plain gateway: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, c, "http://127.0.0.1:"+dead+"/")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("plain non-gateway: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, c, "https://localhost:"+deadTLS+"/")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "refused") {
		t.Errorf("intercepted gateway: %d %q", resp.StatusCode, body)
	}
	out := rawRequest(t, e.srv.Addr(), "CONNECT 127.0.0.1:"+dead+" HTTP/1.1\r\nHost: 127.0.0.1:"+dead+"\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 502") || !strings.Contains(out, "refused") {
		t.Errorf("tunnel: %q", out)
	}
	// The proxy keeps serving.
	if resp, _ := get(t, c, e.otherHTTPURL()); resp.StatusCode != 200 {
		t.Errorf("proxy stopped serving after upstream errors")
	}
}

func TestStatusPage(t *testing.T) {
	e := newEnv(t)
	_, port, _ := net.SplitHostPort(e.srv.Addr())
	resp, body := get(t, http.DefaultClient, "http://"+e.srv.Addr()+"/")
	if resp.StatusCode != 200 || !strings.Contains(body, "gatepass proxy is running") {
		t.Errorf("status page: %d %q", resp.StatusCode, body)
	}
	out := rawRequest(t, e.srv.Addr(), "GET / HTTP/1.1\r\nHost: rebind.evil.test:"+port+"\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 403") {
		t.Errorf("DNS-rebinding Host not refused: %q", out)
	}
	out = rawRequest(t, e.srv.Addr(), "GET / HTTP/1.1\r\nHost: localhost:"+e.tlsGW.port()+"\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 403") || strings.Contains(out, canaryPrefix) {
		t.Errorf("origin-form request naming a gateway: %q", out)
	}
	if e.src.calls != 0 {
		t.Errorf("a non-proxy request asked for a token")
	}
	for _, l := range e.entries.all() {
		if l.Status == 200 {
			t.Errorf("the status page was reported as a proxied request: %+v", l)
		}
	}
}

func TestRequestLogLines(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	get(t, c, e.plainGWURL()+"/logged?secret=q")
	get(t, c, e.tlsGWURL()+"/tls-logged")
	get(t, c, e.otherTLSURL()+"/")
	// An intercepted request is logged when goproxy closes the upstream body, just after
	// the client has its answer.
	waitFor(t, func() bool { return len(e.entries.all()) == 3 }, "three log entries")
	entries := e.entries.all()
	find := func(method, path string) RequestLog {
		for _, en := range entries {
			if en.Method == method && en.Path == path {
				return en
			}
		}
		t.Fatalf("no entry for %s %s in %+v", method, path, entries)
		return RequestLog{}
	}
	if en := find("GET", "/logged"); en.Status != 200 || !en.Injected || en.Profile != "work" || en.Host != "localhost:"+e.plainGW.port() || en.Duration <= 0 {
		t.Errorf("plain entry: %+v", en)
	}
	if en := find("GET", "/tls-logged"); en.Status != 200 || !en.Injected || en.Profile != "work" {
		t.Errorf("intercepted entry: %+v", en)
	}
	if en := find("CONNECT", ""); en.Status != 200 || en.Injected || en.Host != "127.0.0.1:"+e.otherTLS.port() {
		t.Errorf("tunnel entry: %+v", en)
	}
	logs := e.logs.String()
	for _, want := range []string{`msg="proxy request" method=GET host=localhost:` + e.plainGW.port() + ` path=/logged status=200 injected=true`, "path=/tls-logged status=200 injected=true"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "secret=q") {
		t.Errorf("query string logged")
	}
}

func TestWebSocket(t *testing.T) {
	e := newEnv(t)
	tests := map[string]struct {
		up        *upstream
		tls       bool
		wantToken bool
	}{
		"non-gateway plain":   {e.otherHTTP, false, false},
		"plain-HTTP gateway":  {e.plainGW, false, true},
		"intercepted gateway": {e.tlsGW, true, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", e.srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			host := "localhost:" + tc.up.port()
			if tc.up == e.otherHTTP {
				host = "127.0.0.1:" + tc.up.port()
			}
			var rw io.ReadWriter = conn
			target := "http://" + host + "/ws"
			if tc.tls {
				fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", host, host)
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("CONNECT: %v %v", resp, err)
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(e.srv.CACertPEM())
				tc := tls.Client(conn, &tls.Config{ServerName: "localhost", RootCAs: pool})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				rw, target = tc, "/ws"
			}
			// The caller's own Authorization and a Proxy-Authorization for this proxy:
			// a gateway gets the token in place of the first, nobody gets the second.
			fmt.Fprintf(rw, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"+
				"Authorization: Bearer caller-own\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\r\n", target, host)
			br := bufio.NewReader(rw)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			for _, msg := range []string{"ping-1", "ping-2"} {
				io.WriteString(rw, msg)
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
					t.Fatalf("echo %q: got %q %v", msg, buf, err)
				}
			}
			r := last(t, tc.up)
			if tc.wantToken {
				onlyToken(t, r, e.src.current())
			} else if got := r.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer caller-own" {
				t.Errorf("upgrade request Authorization = %q, want only the caller's own", got)
			}
			if got := r.Header.Values("Proxy-Authorization"); len(got) != 0 {
				t.Errorf("upgrade request carried Proxy-Authorization %q upstream", got)
			}
			if r.Header.Get("Upgrade") != "websocket" {
				t.Errorf("Upgrade header lost: %v", r.Header)
			}
		})
	}
	// No upstream ever saw the proxy's credentials.
	for _, u := range []*upstream{e.plainGW, e.tlsGW, e.otherHTTP, e.otherTLS} {
		for _, r := range u.requests() {
			if v := r.Header.Values("Proxy-Authorization"); len(v) != 0 || strings.Contains(r.String(), "Zm9vOmJhcg==") {
				t.Errorf("%s received Proxy-Authorization %q:\n%s", u.name, v, r)
			}
		}
	}
}

func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	e := newEnv(t)
	dir := t.TempDir()
	upstreamCA := dir + "/upstream-ca.pem"
	os.WriteFile(upstreamCA, e.pki.pem, 0o644)
	curl := func(args ...string) (code, body string, err error) {
		args = append([]string{"-sS", "--max-time", "10", "-x", "http://" + e.srv.Addr(), "-w", "\n%{http_code}"}, args...)
		cmd := exec.Command("curl", args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir} // no *_proxy from the environment
		out, err := cmd.CombinedOutput()
		s := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(s, '\n')
		if i < 0 {
			return s, "", err
		}
		return s[i+1:], s[:i], err
	}
	tests := map[string]struct {
		args     []string
		wantCode string
		wantBody string
		up       *upstream
		token    bool
		fail     bool
	}{
		"plain-HTTP gateway":                    {args: []string{e.plainGWURL() + "/c"}, wantCode: "200", wantBody: "hello from plain-gateway", up: e.plainGW, token: true},
		"TLS gateway with gatepass CA":          {args: []string{"--cacert", e.caPEMPath, e.tlsGWURL() + "/c"}, wantCode: "200", wantBody: "hello from tls-gateway", up: e.tlsGW, token: true},
		"TLS gateway with only the upstream CA": {args: []string{"--cacert", upstreamCA, e.tlsGWURL() + "/c"}, fail: true},
		"non-gateway TLS: blind tunnel":         {args: []string{"--cacert", upstreamCA, "-H", "Authorization: Bearer mine", e.otherTLSURL() + "/c"}, wantCode: "200", wantBody: "hello from other-tls", up: e.otherTLS},
		"non-gateway TLS with only gatepass CA": {args: []string{"--cacert", e.caPEMPath, e.otherTLSURL() + "/c"}, fail: true},
		"non-gateway HTTP":                      {args: []string{e.otherHTTPURL() + "/c"}, wantCode: "200", wantBody: "hello from other-http", up: e.otherHTTP},
		"plain HTTP to TLS gateway refused":     {args: []string{"http://localhost:" + e.tlsGW.port() + "/c"}, wantCode: "403"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, body, err := curl(tc.args...)
			if tc.fail {
				// 60: the peer's certificate cannot be authenticated with the given CA
				// (any other error, a refused connection or a proxy failure, is not
				// what the case means).
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 60 {
					t.Fatalf("curl: %v (%s %q); want exit code 60, a certificate verification failure", err, code, body)
				}
				return
			}
			if err != nil || code != tc.wantCode || (tc.wantBody != "" && body != tc.wantBody) {
				t.Fatalf("curl: code %s body %q err %v", code, body, err)
			}
			if tc.up == nil {
				return
			}
			r := last(t, tc.up)
			has := strings.Contains(r.String(), canaryPrefix)
			if has != tc.token {
				t.Errorf("upstream got token: %v, want %v\n%s", has, tc.token, r)
			}
		})
	}
}

// onlyToken checks that a gateway received exactly one Authorization value, the
// token: the caller's own was replaced, not kept beside it (Header.Get reads only the
// first value, which would hide a second).
func onlyToken(t testing.TB, r recorded, token string) {
	t.Helper()
	if got := r.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+token {
		t.Errorf("%s %s reached the gateway with Authorization %q, want only the token", r.Method, r.URI, got)
	}
}

func last(t testing.TB, u *upstream) recorded {
	t.Helper()
	reqs := u.requests()
	if len(reqs) == 0 {
		t.Fatalf("upstream %s received nothing", u.name)
	}
	return reqs[len(reqs)-1]
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// closedPort returns a loopback port with nothing listening.
func closedPort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return p
}
