package proxy

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/gatepass-dev/gatepass/internal/tlsfail"
	"golang.org/x/net/http/httpguts"
)

// newTransport builds the one upstream transport: a pool sized for many concurrent
// callers, HTTP/2 where the upstream offers it, compression left to the endpoints (the
// caller's Accept-Encoding passes through), and an explicit upstream proxy only.
func newTransport(opts Options, checkConn, checkProxy func(net.Conn) error) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	// The corporate proxy is not an upstream the token goes to in the clear (it
	// tunnels the gateway's TLS), and on loopback it is often a service account's
	// (cntlm, px): checkConn is for the upstreams themselves, checkProxy for it.
	proxyAddr := ""
	if up := opts.UpstreamProxy; up != nil {
		proxyAddr = proxyHostPort(up)
	}
	return &http.Transport{
		Proxy: upstreamProxyFunc(opts.UpstreamProxy),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				check := checkConn
				if addr == proxyAddr {
					check = checkProxy
				}
				if err = check(c); err != nil {
					c.Close()
					return nil, err
				}
			}
			return c, err
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ReadBufferSize:        32 << 10,
		WriteBufferSize:       32 << 10,
		TLSClientConfig:       &tls.Config{RootCAs: opts.UpstreamRootCAs, MinVersion: tls.VersionTLS12},
	}
}

// upstreamProxyFunc never consults HTTP(S)_PROXY (they may name this very proxy) and
// keeps loopback targets direct, so a plain-HTTP local gateway's token never crosses
// the corporate proxy.
func upstreamProxyFunc(up *url.URL) func(*http.Request) (*url.URL, error) {
	if up == nil {
		return nil
	}
	return func(r *http.Request) (*url.URL, error) {
		if isLoopbackHost(strings.ToLower(r.URL.Hostname())) {
			return nil, nil
		}
		return up, nil
	}
}

// isHopHeader reports whether k (canonical) is connection-specific (RFC 9110
// §7.6.1) and never forwarded.
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// removeHopByHop deletes hop-by-hop fields and those named in Connection. A WebSocket
// (or other) upgrade keeps "Connection: Upgrade" and its Upgrade field.
func removeHopByHop(h http.Header) {
	upgrade := ""
	if httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		upgrade = h.Get("Upgrade")
	}
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	// One pass over the (few) fields present rather than a lookup per hop-by-hop
	// name: this runs twice per proxied request. Keys are canonical (net/http
	// parsed them).
	for k := range h {
		if isHopHeader(k) {
			delete(h, k)
		}
	}
	if upgrade != "" {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", upgrade)
	}
}

// reqState travels with a request through the reverse proxy.
type reqState struct {
	d        Decision
	tok      Token
	injected bool
	status   int
	err      string
}

type stateKey struct{}

type reverseProxy = httputil.ReverseProxy

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(p []byte) { b.p.Put(&p) }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

// newReverseProxy serves upgrade requests (WebSocket) on the plain path; forward serves
// everything else.
func newReverseProxy(s *Server) *reverseProxy {
	return &httputil.ReverseProxy{
		Transport:  s.transport,
		BufferPool: s.bufs,
		ErrorLog:   slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := pr.In.Context().Value(stateKey{}).(*reqState)
			// A forward proxy passes the request on as sent: keep the caller's forwarding
			// fields and query as they were (Rewrite mode strips or cleans them).
			for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			// Connect to exactly what the policy decided on (the Host header stays as sent).
			pr.Out.URL.Host = st.d.Addr()
			if st.injected {
				pr.Out.Header.Set(st.tok.Header, "Bearer "+st.tok.Value)
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			st := resp.Request.Context().Value(stateKey{}).(*reqState)
			st.status = resp.StatusCode
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.upstreamFailed(w, r, r.Context().Value(stateKey{}).(*reqState), err)
		},
	}
}

// upstreamError turns a transport error into a 502 (504 for timeouts) with the reason.
func upstreamError(d Decision, err error) Decision {
	status := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
	}
	var fe *foreignUpstreamError
	if errors.As(err, &fe) {
		r := refuse(http.StatusBadGateway, "upstream_other_user", fmt.Sprintf("upstream %s: %v", d.Addr(), fe))
		r.Host, r.Port, r.Profile = d.Host, d.Port, d.Profile
		r.Hint = "nothing was sent to it; if that is your local server's port, your server is not running and someone else holds the port: start yours again (on another port if need be) and retry"
		return r
	}
	r := refuse(status, "upstream_unreachable", fmt.Sprintf("upstream %s: %v", d.Addr(), err))
	r.Host, r.Port, r.Profile = d.Host, d.Port, d.Profile
	r.Hint = upstreamCertHint(err)
	return r
}

// upstreamCertHint says what to do when the upstream's certificate failed
// verification, by how it failed; "" for any other error (a network failure).
func upstreamCertHint(err error) string {
	const nothing = "the upstream's TLS certificate did not verify, so nothing was sent to it: "
	switch tlsfail.Of(err) {
	case tlsfail.HostName:
		return nothing + "it is not for that host name; check the host in the URL, or what answers for that host " +
			"(a DNS entry, /etc/hosts, a corporate proxy's routing)"
	case tlsfail.Expired:
		return nothing + "it has expired or is not yet valid; check this machine's clock; if the clock is right, " +
			"the upstream's certificate must be renewed"
	case tlsfail.Untrusted:
		return nothing + "if the host is right and it uses a private CA, add that CA to this machine's trust store " +
			"(or start gatepass with SSL_CERT_FILE naming a bundle that has it), then retry"
	}
	return ""
}

// ServeHTTP is the proxy's entry point. CONNECT to a gateway is intercepted here
// (intercept); every other CONNECT goes to goproxy, which tunnels or refuses as the
// policy says. Everything else (absolute-URI requests, the hot path, and origin-form
// status requests) is served here.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		if d := s.decideConnect(r); d.Action == Intercept {
			s.intercept(w, r, d)
			return
		}
		s.gp.ServeHTTP(w, r)
		return
	}
	s.serveProxied(w, r)
}

// serveProxied serves a request on the listen port that is not a CONNECT: an
// absolute-URI request to forward, or an origin-form one for the status page.
func (s *Server) serveProxied(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	info := RequestInfo{Method: r.Method, HostHeader: r.Host, ProxyPort: s.port()}
	info.setPage(r.Header)
	info.LocalPage = s.peers.localPage
	scheme := ""
	if r.URL.Scheme != "" {
		info.Scheme, info.Target, info.Userinfo = r.URL.Scheme, r.URL.Host, r.URL.User != nil
		scheme = strings.ToLower(r.URL.Scheme)
		if info.Target == "" {
			// Absolute-form without a host ("http:///x", "http:/host/x", "http:host/x"):
			// Decide would read an empty target as origin-form, a request to the proxy.
			d := refuse(http.StatusBadRequest, "bad_request",
				fmt.Sprintf("the request URI %q has no host: write it as %s://host[:port]/path", r.RequestURI, scheme))
			s.serveDecided(w, r, d, scheme, start)
			return
		}
	}
	s.serveDecided(w, r, Decide(info, s.tokens.Gateway), scheme, start)
}

func logHost(d Decision, r *http.Request) string {
	if d.Host == "" {
		if r.URL.Host != "" {
			return r.URL.Host
		}
		return r.Host
	}
	return joinHostPort(d.Host, d.Port)
}

// command is Options.Command, or "gatepass".
func (s *Server) command() string {
	if s.opts.Command != "" {
		return s.opts.Command
	}
	return "gatepass"
}

// token asks the broker for the gateway's token. A sign-in-required error becomes an
// immediate 401 naming the profile (no hang, no browser), any other failure a 503.
func (s *Server) token(ctx context.Context, d Decision) (Token, *Decision) {
	tctx := &tokenCtx{Context: ctx}
	defer tctx.end()
	tok, err := s.tokens.TokenFor(tctx, d.Host, d.Port)
	var fail *Decision
	switch {
	case err != nil:
		var sir interface{ SignInRequired() (profile string) }
		if errors.As(err, &sir) {
			p := sir.SignInRequired()
			if p == "" {
				p = d.Profile
			}
			r := refuse(http.StatusUnauthorized, "sign_in_required", "")
			r.Profile = p
			r.Hint = "run " + s.command() + " login --profile " + p
			fail = &r
		} else {
			r := refuse(http.StatusServiceUnavailable, "token_unavailable", "no token for "+d.Addr()+": "+err.Error())
			r.Profile = d.Profile
			r.Hint = "run " + s.command() + " status --profile " + d.Profile + " to see its sign-in; " + s.command() + " login --profile " + d.Profile + " signs in again"
			fail = &r
		}
	case tok.Value == "" || !httpguts.ValidHeaderFieldValue(tok.Value):
		r := refuse(http.StatusServiceUnavailable, "token_unavailable", "the broker returned an unusable token for "+d.Addr())
		r.Profile = d.Profile
		fail = &r
	case !tok.Expiry.IsZero() && !time.Now().Before(tok.Expiry):
		r := refuse(http.StatusServiceUnavailable, "token_unavailable", "the broker returned an expired token for "+d.Addr()+"; try again")
		r.Profile = d.Profile
		fail = &r
	}
	if fail != nil {
		return Token{}, fail
	}
	switch {
	case tok.Header == "" || strings.EqualFold(tok.Header, "Authorization"):
		tok.Header = "Authorization"
	case strings.EqualFold(tok.Header, "Proxy-Authorization"):
		tok.Header = "Proxy-Authorization"
	default:
		r := refuse(http.StatusServiceUnavailable, "token_unavailable", fmt.Sprintf("the broker asked for unsupported header %q", tok.Header))
		r.Profile = d.Profile
		return Token{}, &r
	}
	return tok, nil
}

// tokenCtx is the context of a token lookup: its parent with tokenTimeout applied,
// but only once something asks for its Done channel, error or deadline. The broker
// answers from its cached token without looking at the context, so the common
// lookup sets up no timer (context.WithTimeout per request was 3% of the proxy's
// CPU under load); a refresh that waits on the network gets the timeout as before.
type tokenCtx struct {
	context.Context
	once   sync.Once
	ctx    context.Context // the parent with the timeout, made by the first wait
	cancel context.CancelFunc
}

func (c *tokenCtx) timed() context.Context {
	c.once.Do(func() { c.ctx, c.cancel = context.WithTimeout(c.Context, tokenTimeout) })
	return c.ctx
}

func (c *tokenCtx) Deadline() (time.Time, bool) { return c.timed().Deadline() }
func (c *tokenCtx) Done() <-chan struct{}       { return c.timed().Done() }
func (c *tokenCtx) Err() error                  { return c.timed().Err() }

// end cancels the lookup's context: whatever still holds it sees it done.
func (c *tokenCtx) end() {
	c.once.Do(func() { c.ctx = endedCtx }) // never waited on: no timer to stop
	if c.cancel != nil {
		c.cancel()
	}
}

// endedCtx is a context that is already done.
var endedCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// errorBody is the JSON body of every answer the proxy makes up itself.
type errorBody struct {
	Error   string `json:"error"`
	Profile string `json:"profile,omitempty"`
	Host    string `json:"host,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Hint    string `json:"hint,omitempty"`
}

func refusalBody(d Decision) []byte {
	b := errorBody{Error: d.Code, Profile: d.Profile, Reason: d.Reason}
	if d.Host != "" {
		b.Host = joinHostPort(d.Host, d.Port)
	}
	switch {
	case d.Hint != "":
		b.Hint = d.Hint
	case d.Code == "sign_in_required":
		b.Hint = "run gatepass login --profile " + d.Profile
	case d.Code == "token_unavailable":
		b.Hint = "run gatepass status --profile " + d.Profile + " to see its sign-in; gatepass login --profile " + d.Profile + " signs in again"
	case d.Code == "upstream_unreachable" && d.Status == http.StatusGatewayTimeout:
		b.Hint = "the upstream did not answer in time: check the host and port, and the network or VPN to it, then retry"
	case d.Code == "upstream_unreachable":
		b.Hint = "check that the upstream is running and reachable from this machine at that host and port, then retry"
	}
	out, _ := json.Marshal(b)
	return append(out, '\n')
}

func refusalHeader(d Decision, n int) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(n))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Gatepass-Error", d.Code)
	return h
}

func writeRefusal(w http.ResponseWriter, d Decision) {
	body := refusalBody(d)
	for k, v := range refusalHeader(d, len(body)) {
		w.Header()[k] = v
	}
	w.WriteHeader(d.Status)
	w.Write(body)
}

func refusalResponse(req *http.Request, d Decision) *http.Response {
	body := refusalBody(d)
	return &http.Response{
		Status:        strconv.Itoa(d.Status) + " " + http.StatusText(d.Status),
		StatusCode:    d.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        refusalHeader(d, len(body)),
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// statusPage answers origin-form requests to the proxy port (already Host-checked by
// Decide). It names no gateway and carries no token.
func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) int {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return http.StatusNotFound
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return http.StatusMethodNotAllowed
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "gatepass proxy is running on %s.\nUse it as your HTTP and HTTPS proxy, e.g. HTTPS_PROXY=http://%s (curl -x http://%s).\n", s.Addr(), s.Addr(), s.Addr())
	return http.StatusOK
}

// goproxyLogger sends goproxy's own messages to slog at debug level.
type goproxyLogger struct{ log *slog.Logger }

func (l goproxyLogger) Printf(format string, v ...any) {
	l.log.Debug("goproxy: " + strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// newGoproxy configures goproxy for the CONNECTs that are not intercepted: our policy
// decides tunnel or refuse, our dialer carries it. Intercepted CONNECTs never reach it
// (ServeHTTP takes them, mitm.go), so goproxy's built-in CA is never used.
func newGoproxy(s *Server) *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = goproxyLogger{s.log}
	gp.Tr = s.transport
	gp.ConnectDial = nil // NewProxyHttpServer reads HTTPS_PROXY: never inherit it
	gp.ConnectDialWithReq = s.dialTunnel
	gp.ConnectionErrHandler = func(w io.Writer, ctx *goproxy.ProxyCtx, err error) {
		// goproxy calls this for a failed dial, before the tunnel is answered, and for
		// a copy error inside an established tunnel, whose bytes are the client's own
		// (TLS): only the first gets an answer, in the shape of every other refusal.
		var te *tunnelDialError
		if errors.As(err, &te) {
			resp := refusalResponse(ctx.Req, te.d)
			resp.Close = true
			_ = resp.Write(w)
		}
	}
	gp.KeepAcceptEncoding = true
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unreachable", http.StatusInternalServerError) // ServeHTTP handles these
	})
	gp.OnRequest().HandleConnectFunc(s.handleConnect)
	return gp
}

func (s *Server) handleConnect(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	start := time.Now()
	r := ctx.Req
	d := s.decideConnect(r)
	if d.Action == Intercept {
		// ServeHTTP intercepts before goproxy sees the request; never tunnel a gateway.
		d = refuse(http.StatusInternalServerError, "internal_error", "intercepted CONNECT reached the tunnel handler")
	}
	if d.Action == Tunnel {
		return &goproxy.ConnectAction{Action: goproxy.ConnectAccept}, d.Addr()
	}
	ctx.Resp = refusalResponse(r, d)
	ctx.Resp.Close = true
	s.logRequest(RequestLog{Time: start, Method: http.MethodConnect, Host: logHost(d, r), Status: d.Status, Err: d.Code, Duration: time.Since(start)})
	return &goproxy.ConnectAction{Action: goproxy.ConnectReject}, host
}

// decideConnect decides a CONNECT; an intercept without a local CA becomes a refusal.
func (s *Server) decideConnect(r *http.Request) Decision {
	// net/http parses "CONNECT a@b:443" as user "a", host "b:443": Decide refuses userinfo.
	// The target as sent: net/http keeps only the authority of "CONNECT host:443/x" in
	// r.URL.Host, and such a target is not authority-form (RFC 9110 §9.3.6).
	target := r.RequestURI
	if target == "" {
		target = r.URL.Host
	}
	d := Decide(RequestInfo{Method: http.MethodConnect, Target: target, Userinfo: r.URL.User != nil, HostHeader: r.Host, ProxyPort: s.port()}, s.tokens.Gateway)
	if d.Action == Intercept && s.ca == nil {
		d = refuse(http.StatusServiceUnavailable, "no_local_ca", "no local CA is configured to intercept "+d.Addr())
	}
	return d
}

// dialTunnel opens a blind CONNECT tunnel's upstream connection; the tunnel's log line is
// written here, where its outcome is known.
func (s *Server) dialTunnel(r *http.Request, network, addr string) (net.Conn, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	c, err := s.dialUpstream(ctx, network, addr)
	e := RequestLog{Time: start, Method: http.MethodConnect, Host: addr, Status: http.StatusOK, Duration: time.Since(start)}
	if err != nil {
		host, port, _ := net.SplitHostPort(addr)
		te := &tunnelDialError{d: upstreamError(Decision{Host: host, Port: port}, err), err: err}
		e.Status, e.Err = te.d.Status, err.Error()
		s.logRequest(e)
		return nil, te
	}
	s.logRequest(e)
	return c, nil
}

// tunnelDialError is a blind tunnel's failed dial, with the refusal its client gets
// (ConnectionErrHandler in newGoproxy).
type tunnelDialError struct {
	d   Decision
	err error
}

func (e *tunnelDialError) Error() string {
	return fmt.Sprintf("gatepass: upstream %s unreachable: %v", e.d.Addr(), e.err)
}

func (e *tunnelDialError) Unwrap() error { return e.err }

func (s *Server) dialUpstream(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	host, _, _ := net.SplitHostPort(addr)
	up := s.opts.UpstreamProxy
	if up == nil || isLoopbackHost(host) {
		return d.DialContext(ctx, network, addr)
	}
	return dialViaProxy(ctx, d, up, s.opts.UpstreamRootCAs, addr, s.peers.checkProxy)
}

// proxyHostPort is where the upstream proxy up listens: its host and port, the
// scheme's default port when it names none.
func proxyHostPort(up *url.URL) string {
	return net.JoinHostPort(up.Hostname(), cmp.Or(up.Port(), defaultPorts[up.Scheme]))
}

// dialViaProxy opens a tunnel to addr through an HTTP(S) proxy with CONNECT
// (RFC 9110 §9.3.6), authenticating with the proxy URL's user info if any.
func dialViaProxy(ctx context.Context, d *net.Dialer, up *url.URL, roots *x509.CertPool, addr string, checkProxy func(net.Conn) error) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", proxyHostPort(up))
	if err != nil {
		return nil, fmt.Errorf("upstream proxy %s: %w", up.Redacted(), err)
	}
	if err := checkProxy(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("upstream proxy %s: %w", up.Redacted(), err)
	}
	if up.Scheme == "https" {
		cfg := &tls.Config{ServerName: up.Hostname(), RootCAs: roots, MinVersion: tls.VersionTLS12}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("upstream proxy %s: %w", up.Redacted(), err)
		}
		c = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	if up.User != nil {
		pw, _ := up.User.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(up.User.Username()+":"+pw)) + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, fmt.Errorf("upstream proxy %s: %w", up.Redacted(), err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("upstream proxy %s: %w", up.Redacted(), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("upstream proxy %s refused CONNECT %s: %s", up.Redacted(), addr, resp.Status)
	}
	c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: c, r: br}, nil
	}
	return c, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
