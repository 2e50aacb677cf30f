package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// An intercepted CONNECT (a gateway reached over TLS) is served by the proxy itself:
// the client's connection is hijacked, answered 200, TLS is terminated with a leaf
// from the local CA, and the decrypted connection is served by the request loop
// (loop.go), which hands anything but plain HTTP/1.1 requests to the proxy's second
// http.Server through an in-process listener. Each request inside is decided again
// (it must address the tunnel's host) and forwarded on the same hot path as plain
// requests. (goproxy's MITM loop wrote each response through the TLS connection
// unbuffered, and it is not used.)

// mitmConn is a client connection inside an intercepted tunnel, TLS already terminated.
type mitmConn struct {
	net.Conn
	tunnel Decision
}

// NetConn returns the connection underneath.
func (c *mitmConn) NetConn() net.Conn { return c.Conn }

type tunnelKey struct{}

// connListener hands connections to http.Server.Serve from elsewhere in the process.
type connListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// push gives c to the server; false if the listener is closed (c is not consumed).
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// newMITMServer builds the server for intercepted connections.
func (s *Server) newMITMServer() *http.Server {
	return &http.Server{
		Handler:           http.HandlerFunc(s.serveIntercepted),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          s.srv.ErrorLog,
		ConnState:         s.connState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if mc, ok := c.(*mitmConn); ok {
				return context.WithValue(ctx, tunnelKey{}, mc.tunnel)
			}
			return ctx
		},
	}
}

// intercept takes over the client's connection for a CONNECT to a gateway host.
func (s *Server) intercept(w http.ResponseWriter, r *http.Request, d Decision) {
	start := time.Now()
	leaf, err := s.ca.Leaf(d.Host)
	if err != nil {
		s.log.Warn("cannot intercept TLS", "host", d.Addr(), "err", err)
		ref := refuse(http.StatusServiceUnavailable, "no_local_ca", "cannot issue a certificate for "+d.Addr()+": "+err.Error())
		writeRefusal(w, ref)
		s.logRequest(RequestLog{Time: start, Method: http.MethodConnect, Host: d.Addr(), Status: ref.Status, Err: ref.Code, Duration: time.Since(start)})
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.log.Warn("cannot take over the CONNECT connection", "host", d.Addr(), "err", err)
		http.Error(w, "cannot intercept this connection", http.StatusInternalServerError)
		return
	}
	s.log.Debug("intercepting CONNECT", "host", d.Addr(), "profile", d.Profile)
	// Bytes the client sent right after the CONNECT (a ClientHello in the same write)
	// are in brw.Reader: read through it.
	var raw net.Conn = conn
	if rc, ok := conn.(*replayConn); ok && rc.drained() {
		// The listen port's loop handed the CONNECT over; nothing of it is left to
		// replay, so TLS reads the connection itself.
		raw = rc.Conn
	}
	if brw.Reader.Buffered() > 0 {
		raw = &bufferedConn{Conn: raw, r: brw.Reader}
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		conn.Close()
		return
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{*leaf}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	tc := tls.Server(raw, cfg)
	// The handshake runs in its own goroutine: the CONNECT handler returns at once,
	// and a client that never completes it is dropped after the timeout.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.log.Debug("intercepted client TLS handshake failed", "host", d.Addr(), "err", err)
			tc.Close()
			return
		}
		s.serveTunnel(tc, d)
	}()
}

// serveIntercepted serves one request the intercepting http.Server read (one the
// request loop handed over, loop.go).
func (s *Server) serveIntercepted(w http.ResponseWriter, r *http.Request) {
	tunnel, _ := r.Context().Value(tunnelKey{}).(Decision)
	s.serveInTunnel(w, r, tunnel)
}

// serveInTunnel serves one request read inside the intercepted tunnel to tunnel.
func (s *Server) serveInTunnel(w http.ResponseWriter, r *http.Request, tunnel Decision) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	start := time.Now()
	info := RequestInfo{Method: r.Method, Scheme: "https", HostHeader: r.Host, Tunnel: tunnel.Addr(), ProxyPort: s.port()}
	info.setPage(r.Header)
	info.LocalPage = s.peers.localPage
	if r.RequestURI != "" && !strings.HasPrefix(r.RequestURI, "/") && r.RequestURI != "*" {
		if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
			info.Target, info.Userinfo = u.Host, u.User != nil
		}
	}
	d := Decide(info, s.tokens.Gateway)
	if d.Action == StatusPage {
		d = refuse(http.StatusBadRequest, "bad_request", "no status page inside a tunnel")
	}
	s.serveDecided(w, r, d, "https", start)
}

// serveMITM runs the intercepted-connection server until Shutdown.
func (s *Server) serveMITM() {
	if err := s.mitm.Serve(s.mitmLn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		s.log.Error("proxy stopped serving intercepted connections", "err", err)
	}
}
