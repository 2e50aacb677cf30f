package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests cover two upstream paths: a corporate proxy in front of every upstream
// (Options.UpstreamProxy), and an upstream that accepts a request and never answers.
//
// Hosts under .corp.test (RFC 6761 reserved) exist only inside the recording corporate
// proxy, which maps them to loopback test servers: gatepass must never resolve or dial
// them itself, so any request that bypasses the corporate proxy fails.

// newUpstreamAt is newUpstream listening on addr (e.g. a non-loopback interface).
func newUpstreamAt(t testing.TB, name string, pki *testPKI, h2 bool, addr string) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{name: name}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.Listener.Close()
	u.Listener = ln
	if pki != nil {
		u.EnableHTTP2 = h2
		u.TLS = &tls.Config{Certificates: []tls.Certificate{pki.cert}}
		u.StartTLS()
	} else {
		u.Start()
	}
	t.Cleanup(u.Close)
	return u
}

// corpRecord is one request the corporate proxy received.
type corpRecord struct {
	Method string
	Target string // CONNECT authority, or the absolute URI
	Header http.Header
	sent   *logBuffer // CONNECT only: every byte the proxy's client sent into the tunnel
}

// corpProxy is a recording corporate forward proxy: absolute-form requests and CONNECT
// tunnels, to the hosts in routes only (fake name:port -> real loopback address).
type corpProxy struct {
	*httptest.Server
	tr *http.Transport

	mu     sync.Mutex
	routes map[string]string
	recs   []corpRecord
	conns  map[net.Conn]struct{} // tunnel connections, closed at cleanup
}

func newCorpProxy(t testing.TB) *corpProxy {
	t.Helper()
	p := &corpProxy{routes: map[string]string{}, conns: map[net.Conn]struct{}{}}
	p.tr = &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			real, ok := p.route(addr)
			if !ok {
				return nil, errors.New("corp proxy: no route to " + addr)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, real)
		},
	}
	p.Server = httptest.NewServer(p)
	t.Cleanup(func() {
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

func (p *corpProxy) route(addr string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.routes[addr]
	return r, ok
}

func (p *corpProxy) addRoute(fake, real string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[fake] = real
}

func (p *corpProxy) records() []corpRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]corpRecord(nil), p.recs...)
}

func (p *corpProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *corpProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := corpRecord{Method: r.Method, Header: r.Header.Clone()}
	if r.Method == http.MethodConnect {
		rec.Target, rec.sent = r.Host, &logBuffer{}
	} else {
		rec.Target = r.URL.String()
	}
	p.mu.Lock()
	p.recs = append(p.recs, rec)
	p.mu.Unlock()
	if r.Method != http.MethodConnect {
		if r.URL.Scheme != "http" || r.URL.Host == "" {
			http.Error(w, "corp proxy: absolute-form http only", http.StatusBadRequest)
			return
		}
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.Header.Del("Proxy-Authorization")
		out.Header.Del("Proxy-Connection")
		resp, err := p.tr.RoundTrip(out)
		if err != nil {
			http.Error(w, "corp proxy: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	}
	real, ok := p.route(r.Host)
	if !ok {
		http.Error(w, "corp proxy: no route", http.StatusBadGateway)
		return
	}
	up, err := net.DialTimeout("tcp", real, 5*time.Second)
	if err != nil {
		http.Error(w, "corp proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	p.track(c, true)
	p.track(up, true)
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	go func() {
		io.Copy(c, up)
		c.Close()
		up.Close()
	}()
	io.Copy(io.MultiWriter(up, rec.sent), brw.Reader)
	up.Close()
	c.Close()
	p.track(c, false)
	p.track(up, false)
}

// corpEnv is a gatepass proxy (optionally behind a corporate proxy) with its own
// upstreams, CA names and trust.
type corpEnv struct {
	src     *fakeSource
	srv     *Server
	logs    *logBuffer
	entries *entryLog
	trust   *x509.CertPool // what the test client trusts besides gatepass's CA
}

// newCorpEnv starts gatepass with the given CA names, upstream roots and upstream proxy.
func newCorpEnv(t testing.TB, src *fakeSource, caNames []string, roots *x509.CertPool, up *url.URL, clientTrust ...[]byte) *corpEnv {
	t.Helper()
	e := &corpEnv{src: src, logs: &logBuffer{}, entries: &entryLog{}, trust: x509.NewCertPool()}
	for _, p := range clientTrust {
		e.trust.AppendCertsFromPEM(p)
	}
	e.srv = startServer(t, Options{
		Listen:          "127.0.0.1:0",
		Tokens:          src,
		CA:              &memCAStore{},
		CANames:         caNames,
		CACertPath:      t.TempDir() + "/ca/gatepass-ca.pem",
		UpstreamProxy:   up,
		UpstreamRootCAs: roots,
		Logger:          slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnRequest:       e.entries.add,
	})
	return e
}

func (e *corpEnv) client() *http.Client {
	pool := e.trust.Clone()
	pool.AppendCertsFromPEM(e.srv.CACertPEM())
	pu, _ := url.Parse("http://" + e.srv.Addr())
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             http.ProxyURL(pu),
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: false,
		},
		Timeout: 10 * time.Second,
	}
}

// checkNoCanary fails if a token shows up in gatepass's log or in a text.
func checkNoCanary(t *testing.T, logs string, texts ...string) {
	t.Helper()
	if strings.Contains(logs, canaryPrefix) {
		t.Errorf("a token is in the log:\n%s", logs)
	}
	for _, s := range texts {
		if strings.Contains(s, canaryPrefix) {
			t.Errorf("a token is in %q", s)
		}
	}
}

const corpPassword = "corp-s3cret-PW"

// TestUpstreamProxyRoutes checks, per kind of request, whether it goes through the
// corporate proxy, what that proxy sees, and that the token reaches gateways only and
// crosses the corporate proxy in clear only on plain HTTP.
func TestUpstreamProxyRoutes(t *testing.T) {
	pki := newTestPKI(t) // localhost / 127.0.0.1
	corpPKI := newNamedPKI(t, []string{"gw.corp.test", "other-tls.corp.test"}, nil)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pki.pem)
	roots.AppendCertsFromPEM(corpPKI.pem)

	corp := newCorpProxy(t)
	plainLocal := newUpstream(t, "plain-local-gateway", nil, false)
	tlsLocal := newUpstream(t, "tls-local-gateway", pki, true) // HTTP/2: served by http.Transport
	otherLocal := newUpstream(t, "other-local-http", nil, false)
	plainRemote := newUpstream(t, "plain-remote-gateway", nil, false)
	tlsRemote := newUpstream(t, "tls-remote-gateway", corpPKI, true) // offers HTTP/2
	otherRemote := newUpstream(t, "other-remote-http", nil, false)
	otherTLSRemote := newUpstream(t, "other-remote-tls", corpPKI, false)
	corp.addRoute("plain.corp.test:80", plainRemote.Listener.Addr().String())
	corp.addRoute("gw.corp.test:443", tlsRemote.Listener.Addr().String())
	corp.addRoute("other.corp.test:80", otherRemote.Listener.Addr().String())
	corp.addRoute("other-tls.corp.test:443", otherTLSRemote.Listener.Addr().String())

	src := newFakeSource()
	src.add("localhost:"+plainLocal.port(), Gateway{Profile: "work", PlainHTTP: true})
	src.add("localhost:"+tlsLocal.port(), Gateway{Profile: "work"})
	src.add("gw.corp.test:443", Gateway{Profile: "work"})
	// The config allows plain_http for loopback hosts only; the proxy itself does not
	// check, so this entry stands for a user who forced a remote plain-HTTP gateway.
	src.add("plain.corp.test:80", Gateway{Profile: "work", PlainHTTP: true})

	up, _ := url.Parse("http://corp-user:" + corpPassword + "@" + corp.Listener.Addr().String())
	e := newCorpEnv(t, src, []string{"localhost", "gw.corp.test"}, roots, up, pki.pem, corpPKI.pem)
	c := e.client()
	wantProxyAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("corp-user:"+corpPassword))

	tests := map[string]struct {
		url      string
		upstream *upstream
		// corp is what the corporate proxy must see ("" = nothing: the request is direct).
		corpMethod, corpTarget string
		inject                 bool
	}{
		"plain gateway on loopback stays direct": {
			url: "http://localhost:" + plainLocal.port() + "/a?x=1", upstream: plainLocal, inject: true,
		},
		"TLS gateway on loopback stays direct": {
			url: "https://localhost:" + tlsLocal.port() + "/a", upstream: tlsLocal, inject: true,
		},
		"non-gateway on loopback stays direct": {
			url: "http://127.0.0.1:" + otherLocal.port() + "/a", upstream: otherLocal,
		},
		// The user chose plain HTTP to this gateway: the corporate proxy sees the request,
		// token included, exactly as the gateway does.
		"remote plain gateway goes through the corporate proxy in clear": {
			url: "http://plain.corp.test/a?x=1", upstream: plainRemote, inject: true,
			corpMethod: http.MethodGet, corpTarget: "http://plain.corp.test/a?x=1",
		},
		"remote non-gateway HTTP goes through the corporate proxy": {
			url: "http://other.corp.test/a?x=1", upstream: otherRemote,
			corpMethod: http.MethodGet, corpTarget: "http://other.corp.test/a?x=1",
		},
		"intercepted TLS gateway is tunnelled through the corporate proxy": {
			url: "https://gw.corp.test/a", upstream: tlsRemote, inject: true,
			corpMethod: http.MethodConnect, corpTarget: "gw.corp.test:443",
		},
		"blind tunnel is tunnelled through the corporate proxy": {
			url: "https://other-tls.corp.test/a", upstream: otherTLSRemote,
			corpMethod: http.MethodConnect, corpTarget: "other-tls.corp.test:443",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			corpBefore, upBefore := len(corp.records()), len(tc.upstream.requests())
			resp, body := get(t, c, tc.url)
			if resp.StatusCode != http.StatusOK || body != "hello from "+tc.upstream.name {
				t.Fatalf("GET %s: %d %q, want 200 from %s", tc.url, resp.StatusCode, body, tc.upstream.name)
			}
			ups := tc.upstream.requests()[upBefore:]
			if len(ups) != 1 {
				t.Fatalf("upstream %s got %d requests, want 1", tc.upstream.name, len(ups))
			}
			got := ups[0].Header.Get("Authorization")
			if tok := src.current(); tc.inject && got != "Bearer "+tok {
				t.Errorf("upstream Authorization = %q, want the injected token", got)
			} else if !tc.inject && got != "" {
				t.Errorf("non-gateway upstream got Authorization %q", got)
			}
			if v := ups[0].Header.Get("Proxy-Authorization"); v != "" {
				t.Errorf("upstream got Proxy-Authorization %q: the corporate proxy's credentials leaked past it", v)
			}
			recs := corp.records()[corpBefore:]
			if tc.corpMethod == "" {
				if len(recs) != 0 {
					t.Fatalf("corporate proxy saw %d requests for a loopback upstream, want none: %+v", len(recs), recs)
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("corporate proxy saw %d requests, want 1: %+v", len(recs), recs)
			}
			r := recs[0]
			if r.Method != tc.corpMethod || r.Target != tc.corpTarget {
				t.Errorf("corporate proxy saw %s %s, want %s %s", r.Method, r.Target, tc.corpMethod, tc.corpTarget)
			}
			if v := r.Header.Get("Proxy-Authorization"); v != wantProxyAuth {
				t.Errorf("corporate proxy got Proxy-Authorization %q, want the credentials from UpstreamProxy", v)
			}
			switch {
			case r.Method == http.MethodConnect:
				// Only a CONNECT and TLS records: never the token in clear.
				if v := r.Header.Get("Authorization"); v != "" {
					t.Errorf("CONNECT to the corporate proxy carries Authorization %q", v)
				}
				if strings.Contains(r.sent.String(), canaryPrefix) {
					t.Errorf("the token crossed the corporate proxy in clear inside the tunnel")
				}
				if r.sent.String() == "" {
					t.Errorf("nothing went through the tunnel: did the request bypass it?")
				}
			case tc.inject:
				if a, want := r.Header.Get("Authorization"), ups[0].Header.Get("Authorization"); a != want {
					t.Errorf("corporate proxy saw Authorization %q, gateway %q: want the same (plain HTTP)", a, want)
				}
			default:
				if v := r.Header.Get("Authorization"); v != "" {
					t.Errorf("corporate proxy saw Authorization %q for a non-gateway", v)
				}
			}
		})
	}
	logs := e.logs.String()
	checkNoCanary(t, logs)
	if strings.Contains(logs, corpPassword) {
		t.Errorf("the corporate proxy password is in the log:\n%s", logs)
	}
}

// TestUpstreamCertHint: the fix a 502 for an upstream certificate names, by how the
// certificate failed (the end-to-end test below covers a wrong name and an unknown CA
// through a real handshake); a network failure gets none.
func TestUpstreamCertHint(t *testing.T) {
	wrap := func(err error) error { return &net.OpError{Op: "remote error", Net: "tcp", Err: err} }
	for err, want := range map[error]string{
		wrap(&tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "gw.example"}}): "host name",
		wrap(&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}):                       "clock",
		wrap(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}):                                             "trust store",
		wrap(&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.NotAuthorizedToSign}}):           "trust store",
		wrap(errors.New("connect: connection refused")):                                                                        "",
	} {
		if got := upstreamCertHint(err); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("upstreamCertHint(%v) = %q, want one with %q", err, got, want)
		}
	}
}

// TestUpstreamProxyGatewayCertChecked: behind a corporate proxy, gatepass still
// verifies the gateway's certificate end to end. A proxy (or whatever it routes to)
// that presents a certificate for another name, or from an untrusted CA, gets a TLS
// handshake and a 502, never the request or the token.
func TestUpstreamProxyGatewayCertChecked(t *testing.T) {
	trusted := newTestPKI(t)                                   // trusted, but only for localhost
	untrusted := newNamedPKI(t, []string{"gw.corp.test"}, nil) // right name, unknown CA
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(trusted.pem)

	tests := map[string]struct {
		pki       *testPKI
		hint, not string // the fix the 502 names, and one it must not give
	}{
		"certificate for another name":   {trusted, "not for that host name", "trust store"},
		"certificate from an unknown CA": {untrusted, "trust store", "host name"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			corp := newCorpProxy(t)
			impostor := newUpstream(t, "impostor", tc.pki, false)
			corp.addRoute("gw.corp.test:443", impostor.Listener.Addr().String())
			src := newFakeSource()
			src.add("gw.corp.test:443", Gateway{Profile: "work"})
			up, _ := url.Parse("http://" + corp.Listener.Addr().String())
			e := newCorpEnv(t, src, []string{"gw.corp.test"}, roots, up)

			resp, body := get(t, e.client(), "https://gw.corp.test/secret")
			if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Gatepass-Error") != "upstream_unreachable" {
				t.Errorf("status %d (%s), want 502 upstream_unreachable; body %s", resp.StatusCode, resp.Header.Get("X-Gatepass-Error"), body)
			}
			if !strings.Contains(body, "certificate") {
				t.Errorf("body %s does not name the certificate problem", body)
			}
			if !strings.Contains(body, tc.hint) || strings.Contains(body, tc.not) || strings.Contains(body, "running and reachable") {
				t.Errorf("body %s: want the hint with %q, not one with %q or the unreachable one", body, tc.hint, tc.not)
			}
			if n := len(impostor.requests()); n != 0 {
				t.Errorf("the impostor got %d requests", n)
			}
			recs := corp.records()
			if len(recs) == 0 || recs[0].Method != http.MethodConnect || recs[0].Target != "gw.corp.test:443" {
				t.Fatalf("corporate proxy saw %+v, want a CONNECT gw.corp.test:443", recs)
			}
			for _, r := range recs {
				if strings.Contains(r.sent.String(), canaryPrefix) {
					t.Errorf("the token went into a tunnel whose certificate failed")
				}
			}
			checkNoCanary(t, e.logs.String(), body)
		})
	}
}

// connRecorder counts connections to a port nothing should use.
type connRecorder struct {
	ln net.Listener
	mu sync.Mutex
	n  int
	hd []string
}

func newConnRecorder(t testing.TB) *connRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &connRecorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			r.mu.Lock()
			r.n++
			r.hd = append(r.hd, line)
			r.mu.Unlock()
			io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			c.Close()
		}
	}()
	return r
}

func (r *connRecorder) seen() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, append([]string(nil), r.hd...)
}

// TestUpstreamProxyEnvironmentIgnored: with no UpstreamProxy, HTTP(S)_PROXY and
// friends are never used (they may name gatepass itself); every path dials directly.
func TestUpstreamProxyEnvironmentIgnored(t *testing.T) {
	rec := newConnRecorder(t)
	envProxy := "http://" + rec.ln.Addr().String()
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		t.Setenv(k, envProxy)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	// Upstreams stay on loopback (this workplace sends test traffic nowhere else).
	// net/http never proxies loopback targets, so the requests below show that every
	// path still works with the variables set; the structural guards show that no
	// proxy from the environment is wired in at all.
	ip := net.IPv4(127, 0, 0, 1)
	pki := newNamedPKI(t, nil, []net.IP{ip})
	host := ip.String()
	plainGW := newUpstreamAt(t, "plain-gateway", nil, false, net.JoinHostPort(host, "0"))
	tlsGW := newUpstreamAt(t, "tls-gateway", pki, true, net.JoinHostPort(host, "0"))
	other := newUpstreamAt(t, "other-http", nil, false, net.JoinHostPort(host, "0"))
	otherTLS := newUpstreamAt(t, "other-tls", pki, false, net.JoinHostPort(host, "0"))
	src := newFakeSource()
	src.add(joinHostPort(host, plainGW.port()), Gateway{Profile: "work", PlainHTTP: true})
	src.add(joinHostPort(host, tlsGW.port()), Gateway{Profile: "work"})
	e := newCorpEnv(t, src, []string{host}, pki.pool, nil, pki.pem)

	// Structural guard too: net/http caches the environment proxy once per process, so
	// a later regression to http.ProxyFromEnvironment might not show up behaviourally.
	if e.srv.transport.Proxy != nil {
		t.Errorf("upstream transport has a Proxy function without UpstreamProxy")
	}
	if e.srv.gp.ConnectDial != nil {
		t.Errorf("goproxy kept the ConnectDial it built from HTTPS_PROXY")
	}

	c := e.client()
	tests := map[string]struct {
		url      string
		upstream *upstream
		inject   bool
	}{
		"plain gateway":           {"http://" + joinHostPort(host, plainGW.port()) + "/a", plainGW, true},
		"intercepted TLS gateway": {"https://" + joinHostPort(host, tlsGW.port()) + "/a", tlsGW, true},
		"non-gateway HTTP":        {"http://" + joinHostPort(host, other.port()) + "/a", other, false},
		"blind tunnel":            {"https://" + joinHostPort(host, otherTLS.port()) + "/a", otherTLS, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := len(tc.upstream.requests())
			resp, body := get(t, c, tc.url)
			if resp.StatusCode != http.StatusOK || body != "hello from "+tc.upstream.name {
				t.Fatalf("GET %s: %d %q, want 200 from %s directly", tc.url, resp.StatusCode, body, tc.upstream.name)
			}
			ups := tc.upstream.requests()[before:]
			if len(ups) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(ups))
			}
			if got := ups[0].Header.Get("Authorization"); (got != "") != tc.inject {
				t.Errorf("upstream Authorization %q, inject=%v", got, tc.inject)
			}
		})
	}
	if n, heads := rec.seen(); n != 0 {
		t.Errorf("the proxy from the environment got %d connections: %q", n, heads)
	}
	checkNoCanary(t, e.logs.String())
}

// hangServer accepts connections (TLS if cert is set), reads whatever comes and never
// answers. It reports the first bytes of each connection and each connection's end.
type hangServer struct {
	ln       net.Listener
	got      chan string   // the first bytes read on a connection
	released chan struct{} // one per connection that the other side closed
}

func newHangServer(t testing.TB, cert *tls.Certificate) *hangServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangServer{ln: ln, got: make(chan string, 16), released: make(chan struct{}, 16)}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if cert != nil {
				c = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"http/1.1"}})
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				first := true
				for {
					n, err := c.Read(buf)
					if n > 0 && first {
						first = false
						h.got <- string(buf[:n])
					}
					if err != nil {
						if !first {
							h.released <- struct{}{}
						}
						return
					}
				}
			}()
		}
	}()
	return h
}

func (h *hangServer) port() string {
	_, p, _ := net.SplitHostPort(h.ln.Addr().String())
	return p
}

// TestUpstreamHangClientGivesUp: the proxy has no response timeout on purpose (long
// polls, event streams), so an upstream that accepts and never answers holds a request
// as long as the client waits. What must hold instead: while it hangs, other requests
// are served; when the client gives up, the proxy closes its upstream connection
// (the upstream sees it end), logs the request as 499 without a token, and goes on
// serving.
func TestUpstreamHangClientGivesUp(t *testing.T) {
	pki := newTestPKI(t)
	corpPKI := newNamedPKI(t, []string{"hang.corp.test"}, nil)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pki.pem)
	roots.AppendCertsFromPEM(corpPKI.pem)

	corp := newCorpProxy(t)
	plainHang := newHangServer(t, nil)
	tlsHang := newHangServer(t, &pki.cert)
	otherTLSHang := newHangServer(t, &pki.cert)
	remotePlainHang := newHangServer(t, nil)
	remoteTLSHang := newHangServer(t, &corpPKI.cert)
	corp.addRoute("hang-plain.corp.test:80", remotePlainHang.ln.Addr().String())
	corp.addRoute("hang.corp.test:443", remoteTLSHang.ln.Addr().String())
	healthy := newUpstream(t, "healthy", nil, false)

	src := newFakeSource()
	src.add("localhost:"+plainHang.port(), Gateway{Profile: "work", PlainHTTP: true})
	src.add("localhost:"+tlsHang.port(), Gateway{Profile: "work"})
	src.add("hang.corp.test:443", Gateway{Profile: "work"})
	src.add("localhost:"+healthy.port(), Gateway{Profile: "work", PlainHTTP: true})
	up, _ := url.Parse("http://" + corp.Listener.Addr().String())
	e := newCorpEnv(t, src, []string{"localhost", "hang.corp.test"}, roots, up, pki.pem, corpPKI.pem)
	c := e.client()

	tests := map[string]struct {
		url      string
		hang     *hangServer
		inject   bool // the hung upstream must have received the token (a gateway)
		logs499  bool // the proxy logs the request itself (not a blind tunnel)
		wantHost string
	}{
		"plain gateway, pooled HTTP/1.1": {
			url: "http://localhost:" + plainHang.port() + "/poll", hang: plainHang, inject: true, logs499: true,
			wantHost: "localhost:" + plainHang.port(),
		},
		"intercepted TLS gateway, pooled HTTP/1.1": {
			url: "https://localhost:" + tlsHang.port() + "/poll", hang: tlsHang, inject: true, logs499: true,
			wantHost: "localhost:" + tlsHang.port(),
		},
		"non-gateway through the corporate proxy": {
			url: "http://hang-plain.corp.test/poll", hang: remotePlainHang, logs499: true,
			wantHost: "hang-plain.corp.test:80",
		},
		"intercepted TLS gateway through the corporate proxy": {
			url: "https://hang.corp.test/poll", hang: remoteTLSHang, inject: true, logs499: true,
			wantHost: "hang.corp.test:443",
		},
		"blind tunnel": {
			url: "https://127.0.0.1:" + otherTLSHang.port() + "/poll", hang: otherTLSHang,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tc.url, nil)
			type result struct {
				err error
				at  time.Time
			}
			done := make(chan result, 1)
			go func() {
				resp, err := c.Do(req)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					err = errors.New("got an answer: " + resp.Status + " " + string(b))
				}
				done <- result{err, time.Now()}
			}()
			var head string
			select {
			case head = <-tc.hang.got:
			case r := <-done:
				t.Fatalf("request ended before reaching the upstream: %v", r.err)
			case <-time.After(5 * time.Second):
				t.Fatal("the hanging upstream never got the request")
			}
			if got := strings.Contains(head, "Bearer "+canaryPrefix); got != tc.inject {
				t.Errorf("hung upstream got the token: %v, want %v; request:\n%s", got, tc.inject, head)
			}

			// The hang holds one request, not the proxy.
			resp, body := get(t, c, "http://localhost:"+healthy.port()+"/ok")
			if resp.StatusCode != http.StatusOK || body != "hello from healthy" {
				t.Fatalf("another request during the hang: %d %q", resp.StatusCode, body)
			}
			select {
			case r := <-done:
				t.Fatalf("the hanging request ended on its own: %v", r.err)
			default:
			}

			gaveUp := time.Now()
			cancel()
			var r result
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("client still blocked 5s after giving up")
			}
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("client error %v, want context.Canceled", r.err)
			}
			select {
			case <-tc.hang.released:
				t.Logf("upstream connection closed %v after the client gave up", time.Since(gaveUp).Round(time.Millisecond))
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream connection is still open 5s after the client gave up")
			}
			if tc.logs499 {
				deadline := time.Now().Add(5 * time.Second)
				var found *RequestLog
				for found == nil && time.Now().Before(deadline) {
					for _, en := range e.entries.all() {
						if en.Host == tc.wantHost && en.Path == "/poll" {
							found = &en
						}
					}
					if found == nil {
						time.Sleep(10 * time.Millisecond)
					}
				}
				if found == nil {
					t.Fatalf("no log entry for %s/poll; entries %+v", tc.wantHost, e.entries.all())
				}
				if found.Status != 499 || found.Err != "client went away" || found.Injected != tc.inject {
					t.Errorf("log entry %+v, want status 499 \"client went away\", injected=%v", *found, tc.inject)
				}
			}

			// And the proxy carries on.
			resp, body = get(t, c, "http://localhost:"+healthy.port()+"/after")
			if resp.StatusCode != http.StatusOK || body != "hello from healthy" {
				t.Fatalf("request after the hang: %d %q", resp.StatusCode, body)
			}
			checkNoCanary(t, e.logs.String(), r.err.Error())
		})
	}
}
