// Package proxy is gatepass's local forward proxy: it attaches a fresh bearer token to
// requests for allow-listed gateway hosts and to nothing else (DESIGN.md §5).
//
// Per request, one pure function (Decide) says what to do: inject a profile's token,
// forward untouched, open a blind CONNECT tunnel, intercept TLS to a gateway with the
// local name-constrained CA, or refuse. The server only carries that decision out. A
// request loop of its own (loop.go) reads each connection's requests with net/http's
// parser and serves absolute-URI HTTP requests, and the requests inside intercepted
// tunnels (mitm.go), through the HTTP/1.1 upstream pool (h1pool.go): that is the hot
// path. The commonest requests there take a fast path (fast.go) that checks the head
// field by field and copies it, without building net/http's objects; whatever it does
// not take, net/http's parser reads. Everything else is handed, unread, to net/http's
// server: CONNECTs (blind tunnels and refusals go through github.com/elazarl/goproxy),
// the status page, upgrades and whatever the loop does not recognise as ordinary.
//
// The proxy sees the broker only through TokenSource and never imports it.
package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/gatepass-dev/gatepass/internal/peer"
)

// Token is a credential to attach to one request.
type Token struct {
	Value  string
	Header string // "Authorization" or "Proxy-Authorization" (Google IAP); the value is "Bearer "+Value
	Expiry time.Time
}

// Gateway says who owns an allow-listed host.
type Gateway struct {
	Profile   string
	PlainHTTP bool // token may go over plain HTTP to this host:port (loopback only, validated by config)
	// PageAllowed, when set, reports whether a web page at https://host:port may use
	// the token from a browser (the profile's allowed_origins), beside the pages that
	// always may: the profile's gateways', and those on loopback served by this user.
	PageAllowed func(host, port string) bool
}

// TokenSource is everything the proxy knows about the broker.
type TokenSource interface {
	// Gateway reports whether host:port is an allow-listed gateway. host is lowercase, without
	// trailing dot, IPv6 unbracketed; port is explicit ("443", "80", ...). Its answers must
	// not change for the life of a Server, which may keep them for a connection's life
	// (a new allow-list means a new Server, as the agent builds one per config).
	Gateway(host, port string) (Gateway, bool)
	// TokenFor returns a fresh token for that gateway host. An error implementing
	// interface{ SignInRequired() (profile string) } means the profile must sign in again.
	TokenFor(ctx context.Context, host, port string) (Token, error)
}

// CAStore keeps the local CA (PEM cert + PEM PKCS#8 key) — in the OS keychain in production.
type CAStore interface {
	LoadCA() (certPEM, keyPEM []byte, found bool, err error)
	SaveCA(certPEM, keyPEM []byte) error
}

// RequestLog is one proxied request, for the log line and the desktop app's live list. Never a token.
type RequestLog struct {
	Time     time.Time
	Method   string
	Host     string
	Path     string
	Status   int
	Injected bool
	Profile  string
	Duration time.Duration
	Err      string
}

// Options configure a Server.
type Options struct {
	Listen          string           // must be loopback; non-loopback -> error
	Tokens          TokenSource      // required
	CA              CAStore          // required when CANames is not empty
	CANames         []string         // permitted name constraints: DNS names ("api.team.example"; ".gw.team.example" for a "*." pattern; "localhost") and IP literals; the CA is (re)issued with exactly these
	CACertPath      string           // where `gatepass ca export`/`ca path` find the PEM cert; written 0644, dir 0700
	UpstreamProxy   *url.URL         // explicit corporate proxy for upstream traffic; nil = direct (HTTP(S)_PROXY from the environment is never used: it could point back at us)
	UpstreamRootCAs *x509.CertPool   // nil = system roots (tests pass their own test CA)
	Logger          *slog.Logger     // nil = discard
	OnRequest       func(RequestLog) // optional, called after each request (must not block: the app buffers)
	// Command is how a shell runs gatepass for this proxy's config, for the
	// hints in 401/503 answers: "gatepass --config /tmp/demo/config.toml" when
	// the config is not the default one. Default "gatepass".
	Command string

	// peerOwner and serverOwner replace the lookups of who holds a client's end
	// and who runs a loopback upstream (tests).
	peerOwner, serverOwner func(net.Conn) (uint32, error)
}

const (
	// tokenTimeout bounds how long a request waits for the broker: a refresh against a
	// hanging issuer must end in a 503, not a hung client.
	tokenTimeout = 15 * time.Second
	// maxHeaderBytes bounds a request head on the proxy port (431 beyond).
	maxHeaderBytes = 64 << 10
)

// NewCA says why this server's local CA was generated when the server was
// made (clients must trust it anew), or "" when the stored CA was used or
// there is none.
func (s *Server) NewCA() string {
	if s.ca == nil {
		return ""
	}
	return s.ca.Issued()
}

// Server is a running (or ready to run) proxy. Create it with New.
type Server struct {
	opts   Options
	log    *slog.Logger
	tokens TokenSource
	ca     *CA // nil when there are no gateways: nothing to intercept
	peers  *peerGate

	transport *http.Transport
	h1        *h1Pool // hot path's upstream client (HTTP/1.1, same goroutine)
	bufs      *bufferPool
	rp        *reverseProxy
	gp        *goproxy.ProxyHttpServer
	srv       *http.Server  // serves what the listen port's request loop hands over (loop.go)
	srvLn     *connListener // hands those connections to srv
	mitm      *http.Server  // serves what the request loop inside a tunnel hands over
	mitmLn    *connListener // hands those connections to mitm

	// mu guards ln, proxyPort, hijacked, pruneAt and fresh. hijacked holds the client
	// connections no http.Server tracks: those the listen port's request loop serves,
	// and those taken over for CONNECT (tunnels, intercepted TLS) and upgrades.
	// Shutdown closes them once in-flight requests have drained.
	mu        sync.Mutex
	ln        net.Listener
	proxyPort string
	hijacked  map[net.Conn]struct{}
	pruneAt   int // prune closed connections from hijacked when it reaches this size
	// fresh holds accepted connections that have not sent a request yet
	// (http.StateNew). http.Server.Shutdown waits up to 5s for those, and
	// clients such as Go's Transport open spare connections they never use.
	fresh map[net.Conn]struct{}

	// inflight counts requests being served inside intercepted tunnels.
	inflight atomic.Int64
	// handedOver and handedOverListen count the connections the request loop gave to
	// the mitm server and to srv (tests check that ordinary requests stay in the loop).
	handedOver, handedOverListen atomic.Int64
	// fastServed and fastSlowAnswers count the requests the fast path served
	// (fast.go), and those of them whose answer net/http's parser read.
	fastServed, fastSlowAnswers atomic.Int64
	// closing is set when Shutdown begins: tunnels close after the request in hand.
	closing atomic.Bool
	// cutOff is set when Shutdown's time ran out and it closes what is still in
	// flight: the requests it ends are logged as cut off, not as clients gone.
	cutOff atomic.Bool
	// base is the parent of every intercepted connection's context; Shutdown cancels
	// it last, ending exchanges that outlived the drain.
	base     context.Context
	stopBase context.CancelFunc
}

// New checks the options, loads or creates the local CA and builds the server. Call
// Start to begin listening.
func New(opts Options) (*Server, error) {
	if opts.Tokens == nil {
		return nil, errors.New("proxy: no token source")
	}
	if err := checkLoopbackListen(opts.Listen); err != nil {
		return nil, err
	}
	if opts.UpstreamProxy != nil {
		switch opts.UpstreamProxy.Scheme {
		case "http", "https":
		default:
			return nil, fmt.Errorf("upstream proxy %q: scheme must be http or https", opts.UpstreamProxy.Redacted())
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, tokens: opts.Tokens, hijacked: make(map[net.Conn]struct{}), pruneAt: 64, fresh: make(map[net.Conn]struct{})}
	s.base, s.stopBase = context.WithCancel(context.Background())
	owner := opts.peerOwner
	if owner == nil {
		owner = peer.Owner
	}
	serverOwner := opts.serverOwner
	if serverOwner == nil {
		serverOwner = peer.ServerOwner
	}
	s.peers = newPeerGate(owner, serverOwner)
	s.peers.log = log.Warn
	if len(opts.CANames) > 0 {
		ca, err := EnsureCA(opts.CA, opts.CANames, opts.CACertPath, log)
		if err != nil {
			return nil, err
		}
		s.ca = ca
	}
	s.transport = newTransport(opts, s.peers.checkUpstream, s.peers.checkProxy)
	s.h1 = newH1Pool(opts.UpstreamRootCAs)
	s.h1.checkConn = s.peers.checkUpstream
	s.bufs = newBufferPool()
	s.rp = newReverseProxy(s)
	s.gp = newGoproxy(s)
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnState:         s.connState,
	}
	s.srvLn = newConnListener()
	s.mitm = s.newMITMServer()
	s.mitmLn = newConnListener()
	return s, nil
}

// checkLoopbackListen accepts only loopback addresses: the proxy hands out tokens to
// whoever can reach it, so it must never listen on a network interface.
func checkLoopbackListen(listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w (want e.g. 127.0.0.1:8787)", listen, err)
	}
	if _, err := parsePortOrZero(port); err != nil {
		return fmt.Errorf("listen address %q: %w", listen, err)
	}
	if strings.EqualFold(host, "localhost") { // as the config's listen check
		return nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Unmap().IsLoopback() {
		return fmt.Errorf("listen address %q is not loopback: the proxy must listen on 127.0.0.1, [::1] or localhost only", listen)
	}
	return nil
}

func parsePortOrZero(p string) (int, error) {
	if p == "0" {
		return 0, nil
	}
	return parsePort(p)
}

// Start binds the listen address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return listenError(s.opts.Listen, err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	s.mu.Lock()
	s.ln, s.proxyPort = ln, port
	s.mu.Unlock()
	s.srvLn.addr = ln.Addr()
	go s.serveMITM()
	go func() {
		if err := s.srv.Serve(s.srvLn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("proxy stopped serving", "addr", ln.Addr().String(), "err", err)
		}
	}()
	go s.acceptLoop(ln)
	s.log.Info("proxy listening", "addr", ln.Addr().String())
	switch {
	case s.peers.on:
	case errors.Is(s.peers.off, peer.ErrUnsupported):
		s.log.Info("the proxy does not check which user's process connects on this system: any local user can use it")
	default:
		s.log.Warn("the proxy cannot tell which user's process connects, so any local user can use it", "why", s.peers.off.Error())
	}
	return nil
}

// CheckListen reports whether the proxy could listen on addr now, with the error
// Start would give (naming the program that holds the port, when it can be found),
// so that a command can stop before it does anything else, such as creating a CA.
func CheckListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return listenError(addr, err)
	}
	return ln.Close()
}

func listenError(listen string, err error) error {
	_, port, _ := net.SplitHostPort(listen)
	if isAddrInUse(err) {
		who := portOwner(port)
		if who != "" {
			who = " by " + who
		}
		return fmt.Errorf("listen on %s: port %s is already in use%s; stop that program or choose another address (`listen` in the config, or --listen): %w", listen, port, who, err)
	}
	return fmt.Errorf("listen on %s (port %s): %w", listen, port, err)
}

// Addr returns the address the proxy listens on ("" before Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

func (s *Server) port() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proxyPort
}

// errClientGone starts the log reason of an exchange whose client connection closed;
// logRequest tells a connection Shutdown closed (cut off) from one the client closed.
const errClientGone = "client went away"

// ErrCutOff is what Shutdown returns (wrapping ctx's error) when ctx ended before every
// request in flight had finished: those requests were cut off.
var ErrCutOff = errors.New("requests still in flight were cut off")

// Shutdown stops accepting, waits for in-flight requests (including those inside
// intercepted tunnels) until ctx ends, then closes tunnels and idle upstream connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	defer s.stopBase()
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		ln.Close() // stop accepting
	}
	// Connections that never sent a request have nothing to drain.
	s.mu.Lock()
	for c := range s.fresh {
		c.Close()
	}
	clear(s.fresh)
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	s.mitmLn.Close()
	s.mitm.SetKeepAlivesEnabled(false)
	// Drain requests in flight inside intercepted tunnels, then close every
	// tunnel connection. (http.Server.Shutdown on the intercepting server
	// would also wait up to 5s for connections that finished their TLS
	// handshake but never sent a request.)
	s.waitInflight(ctx)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil && errors.Is(err, ctx.Err()) { // the time ran out: what is left is cut off
		s.cutOff.Store(true)
		err = fmt.Errorf("%w: %w", ErrCutOff, err)
	}
	_ = s.mitm.Close()
	s.mu.Lock()
	for c := range s.hijacked {
		c.Close()
	}
	clear(s.hijacked)
	s.mu.Unlock()
	s.transport.CloseIdleConnections()
	s.h1.closeIdle(true)
	if s.cutOff.Load() {
		// The exchanges just cut off end as their connections close and their
		// context goes: give them a moment to log that, before the process ends.
		s.stopBase()
		wctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.waitInflight(wctx)
		cancel()
	}
	return err
}

// waitInflight waits until no request is in flight, or until ctx ends.
func (s *Server) waitInflight(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.inflight.Load() > 0 && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateNew:
		s.fresh[c] = struct{}{}
	case http.StateHijacked:
		delete(s.fresh, c)
		s.hijacked[c] = struct{}{}
		// Tunnels end without telling the server (goproxy closes blind tunnels
		// itself): forget the closed ones whenever the set has doubled since the
		// last look, so it stays the size of the open tunnels, at a cost
		// amortised over the CONNECTs.
		if len(s.hijacked) >= s.pruneAt {
			for hc := range s.hijacked {
				if connClosed(hc) {
					delete(s.hijacked, hc)
				}
			}
			s.pruneAt = max(64, 2*len(s.hijacked))
		}
	default:
		delete(s.fresh, c)
	}
}

// connClosed reports whether c has been closed (its file descriptor released).
func connClosed(c net.Conn) bool {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = w.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	return rc.Control(func(uintptr) {}) != nil
}

// CACertPEM returns the local CA certificate (nil when no gateway is configured).
func (s *Server) CACertPEM() []byte {
	if s.ca == nil {
		return nil
	}
	return s.ca.CertPEM()
}

// logRequest writes the one log line of a request and tells OnRequest. The entry holds
// no token by construction: only method, host, path, status and profile.
func (s *Server) logRequest(e RequestLog) {
	if s.cutOff.Load() && strings.HasPrefix(e.Err, errClientGone) {
		// Shutdown closed the connection, not the client.
		e.Err = "cut off: the proxy shut down before the exchange ended"
	}
	if ctx := context.Background(); s.log.Enabled(ctx, slog.LevelInfo) {
		if h, ok := s.log.Handler().(*logHandler); !ok || !h.logRequest(time.Now(), e) {
			var buf [8]slog.Attr
			s.log.LogAttrs(ctx, slog.LevelInfo, requestMsg, e.appendAttrs(buf[:0])...)
		}
	}
	if s.opts.OnRequest != nil {
		s.opts.OnRequest(e)
	}
}

// appendAttrs appends the log line's attributes.
func (e RequestLog) appendAttrs(attrs []slog.Attr) []slog.Attr {
	attrs = append(attrs,
		slog.String("method", e.Method),
		slog.String("host", e.Host),
		slog.String("path", e.Path),
		slog.Int("status", e.Status),
		slog.Bool("injected", e.Injected),
		slog.Duration("duration", e.Duration),
	)
	if e.Profile != "" {
		attrs = append(attrs, slog.String("profile", e.Profile))
	}
	if e.Err != "" {
		attrs = append(attrs, slog.String("err", e.Err))
	}
	return attrs
}

// isLoopbackHost reports whether a normalised host is a loopback name or address.
func isLoopbackHost(host string) bool {
	return isLoopbackName(strings.TrimSuffix(host, "."))
}
