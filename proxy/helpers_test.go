package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/gatepass-dev/gatepass/internal/syncbuf"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const canaryPrefix = "LEAKCANARY-"

// fakeSource is a hand-written TokenSource: an allow-list of exact host:port entries and a
// token that is refreshed (and counted) when it is within margin of expiry.
type fakeSource struct {
	gateways map[string]Gateway // "host:port" (normalised) -> gateway

	mu         sync.Mutex // guards everything below
	value      string
	expiry     time.Time
	lifetime   time.Duration
	margin     time.Duration
	refreshes  int
	calls      int
	signIn     map[string]bool // profiles that must sign in again
	fail       error
	refreshLag time.Duration
	issued     []string // every token value ever issued
	header     string
}

func newFakeSource() *fakeSource {
	return &fakeSource{gateways: map[string]Gateway{}, lifetime: time.Hour, signIn: map[string]bool{}}
}

type signInErr struct{ profile string }

func (e signInErr) Error() string          { return "profile " + e.profile + ": sign-in required" }
func (e signInErr) SignInRequired() string { return e.profile }

func (f *fakeSource) add(hostport string, gw Gateway) { f.gateways[hostport] = gw }

func (f *fakeSource) Gateway(host, port string) (Gateway, bool) {
	gw, ok := f.gateways[joinHostPort(host, port)]
	return gw, ok
}

func (f *fakeSource) TokenFor(ctx context.Context, host, port string) (Token, error) {
	gw, ok := f.Gateway(host, port)
	if !ok {
		return Token{}, fmt.Errorf("%s is not a gateway", joinHostPort(host, port))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.signIn[gw.Profile] {
		return Token{}, fmt.Errorf("refresh: %w", signInErr{gw.Profile})
	}
	if f.fail != nil {
		return Token{}, f.fail
	}
	if f.value == "" || !time.Now().Add(f.margin).Before(f.expiry) {
		if f.value != "" {
			f.refreshes++
			time.Sleep(f.refreshLag) // a refresh takes a while; callers queue on mu
		}
		b := make([]byte, 8)
		rand.Read(b)
		f.value = fmt.Sprintf("%s%d-%x", canaryPrefix, len(f.issued), b)
		f.issued = append(f.issued, f.value)
		f.expiry = time.Now().Add(f.lifetime)
	}
	return Token{Value: f.value, Header: f.header, Expiry: f.expiry}, nil
}

func (f *fakeSource) current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.value
}

// memCAStore is a map-backed CAStore.
type memCAStore struct {
	mu        sync.Mutex
	cert, key []byte
	saves     int
	loadErr   error
}

func (m *memCAStore) LoadCA() ([]byte, []byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.loadErr != nil {
		return nil, nil, false, m.loadErr
	}
	return m.cert, m.key, m.cert != nil, nil
}

func (m *memCAStore) SaveCA(cert, key []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cert, m.key = cert, key
	m.saves++
	return nil
}

// logBuffer collects what another goroutine writes (a child's output, log lines)
// while the test reads it.
type logBuffer = syncbuf.Buffer

// recorded is what an upstream actually received.
type recorded struct {
	Method, Host, URI, Proto string
	Header                   http.Header
	Body                     []byte
}

func (r recorded) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s Host=%s\n", r.Method, r.URI, r.Host)
	r.Header.Write(&b)
	b.Write(r.Body)
	return b.String()
}

// upstream is a real server on loopback that records every request it gets.
type upstream struct {
	*httptest.Server
	name string
	mu   sync.Mutex
	reqs []recorded
	// handler answers after recording (nil: 200 "hello from <name>").
	handler http.HandlerFunc
}

func (u *upstream) requests() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recorded(nil), u.reqs...)
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	rec := recorded{Method: r.Method, Host: r.Host, URI: r.RequestURI, Proto: r.Proto, Header: r.Header.Clone()}
	if r.Header.Get("Upgrade") == "" && r.URL.Path != "/stream-in" {
		rec.Body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
	}
	u.mu.Lock()
	u.reqs = append(u.reqs, rec)
	u.mu.Unlock()
	if u.handler != nil {
		u.handler(w, r)
		return
	}
	if r.Header.Get("Upgrade") == "websocket" {
		wsEcho(w, r)
		return
	}
	w.Header().Set("X-Upstream", u.name)
	fmt.Fprintf(w, "hello from %s", u.name)
}

// wsEcho completes a WebSocket handshake (RFC 6455 §4.2.2) and echoes raw bytes.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
	brw.Flush()
	buf := make([]byte, 1024)
	for {
		n, err := brw.Read(buf)
		if n > 0 {
			c.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// testPKI is an upstream CA (unrelated to gatepass's) and a server cert for localhost.
type testPKI struct {
	pool *x509.CertPool
	pem  []byte
	cert tls.Certificate
}

// newTestPKI is a CA and a server certificate for localhost, 127.0.0.1 and ::1.
func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	return newNamedPKI(t, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")})
}

// newNamedPKI is a test CA and a server certificate it signed for the given names.
func newNamedPKI(t testing.TB, dns []string, ips []net.IP) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "test upstream"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: dns, IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testPKI{
		pool: pool,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert: tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key},
	}
}

func newUpstream(t testing.TB, name string, pki *testPKI, h2 bool) *upstream {
	t.Helper()
	u := &upstream{name: name}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
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

func (u *upstream) port() string {
	_, p, _ := net.SplitHostPort(u.Listener.Addr().String())
	return p
}

// env is one proxy with its upstreams:
//
//	plainGW   http://localhost:P   gateway listed in plain_http
//	tlsGW     https://localhost:P  gateway with its own test CA (HTTP/2 offered)
//	otherHTTP http://127.0.0.1:P   not a gateway
//	otherTLS  https://127.0.0.1:P  not a gateway
type env struct {
	t         testing.TB
	src       *fakeSource
	store     *memCAStore
	pki       *testPKI
	plainGW   *upstream
	tlsGW     *upstream
	otherHTTP *upstream
	otherTLS  *upstream
	srv       *Server
	logs      *logBuffer
	entries   *entryLog
	caPEMPath string
}

type entryLog struct {
	mu sync.Mutex
	e  []RequestLog
}

func (l *entryLog) add(e RequestLog) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.e = append(l.e, e)
}

func (l *entryLog) all() []RequestLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]RequestLog(nil), l.e...)
}

// newEnv starts the proxy of the environment; mods change its options first.
func newEnv(t testing.TB, mods ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, src: newFakeSource(), store: &memCAStore{}, pki: newTestPKI(t), logs: &logBuffer{}, entries: &entryLog{}}
	e.plainGW = newUpstream(t, "plain-gateway", nil, false)
	e.tlsGW = newUpstream(t, "tls-gateway", e.pki, true)
	e.otherHTTP = newUpstream(t, "other-http", nil, false)
	e.otherTLS = newUpstream(t, "other-tls", e.pki, false)
	e.src.add("localhost:"+e.plainGW.port(), Gateway{Profile: "work", PlainHTTP: true})
	e.src.add("localhost:"+e.tlsGW.port(), Gateway{Profile: "work"})
	e.caPEMPath = t.TempDir() + "/ca/gatepass-ca.pem"
	opts := Options{
		Listen:          "127.0.0.1:0",
		Tokens:          e.src,
		CA:              e.store,
		CANames:         []string{"localhost"},
		CACertPath:      e.caPEMPath,
		UpstreamRootCAs: e.pki.pool,
		Logger:          slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnRequest:       e.entries.add,
	}
	for _, m := range mods {
		m(&opts)
	}
	e.srv = startServer(t, opts)
	return e
}

// startServer starts a proxy with opts and shuts it down (within 5s, or the test
// fails) when the test ends.
func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Shutdown after %v: %v (in flight: %d)", time.Since(start), err, srv.inflight.Load())
		}
	})
	return srv
}

func (e *env) plainGWURL() string   { return "http://localhost:" + e.plainGW.port() }
func (e *env) tlsGWURL() string     { return "https://localhost:" + e.tlsGW.port() }
func (e *env) otherHTTPURL() string { return "http://127.0.0.1:" + e.otherHTTP.port() }
func (e *env) otherTLSURL() string  { return "https://127.0.0.1:" + e.otherTLS.port() }

// client returns a Go client using the proxy, trusting gatepass's CA and the upstream
// test CA (for the blind tunnel).
func (e *env) client() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.srv.CACertPEM())
	pool.AppendCertsFromPEM(e.pki.pem)
	pu, _ := url.Parse("http://" + e.srv.Addr())
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               http.ProxyURL(pu),
			TLSClientConfig:     &tls.Config{RootCAs: pool},
			MaxIdleConnsPerHost: 64,
			ForceAttemptHTTP2:   false,
		},
		Timeout: 20 * time.Second,
	}
}

// countingClient is e.client() counting the connections it opens to the proxy.
func (e *env) countingClient() (*http.Client, *atomic.Int32) {
	c := e.client()
	dials := new(atomic.Int32)
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	return c, dials
}

func get(t testing.TB, c *http.Client, u string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// rawRequest writes raw bytes to the proxy and returns the raw response head and body.
func rawRequest(t testing.TB, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, req)
	b, _ := io.ReadAll(c)
	return string(b)
}
