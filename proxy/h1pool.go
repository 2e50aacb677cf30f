package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Pool is the hot path's upstream client: HTTP/1.1 over a small keep-alive pool of
// connections per upstream, driven entirely by the calling goroutine. http.Transport
// hands each request between the caller and two goroutines per connection (writeLoop,
// readLoop); on a 2-core machine under load those hand-offs cost more than the
// socket I/O itself (see bench/HISTORY.md). Here the handler writes the request head
// through a bufio.Writer and reads the response with http.ReadResponse on the
// connection's bufio.Reader, in its own goroutine. A request body is the one thing
// written concurrently (by a second goroutine), so an upstream that answers before
// reading the whole upload cannot deadlock the exchange.
//
// Anything unusual stays on http.Transport: upgrades (WebSocket), Expect: 100-continue,
// upstreams that negotiate HTTP/2 (learned per host from ALPN), and upstreams reached
// through a corporate proxy.
type h1Pool struct {
	dialer      *net.Dialer
	tlsConfig   *tls.Config          // template: RootCAs and MinVersion; ServerName set per dial
	maxIdle     int                  // idle connections kept per upstream
	checkConn   func(net.Conn) error // vets a new connection before anything is sent (peer.go: loopback servers of other users)
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   map[h1Key][]*h1Conn // most recently used last
	h2     map[string]bool     // TLS upstreams that chose HTTP/2: leave them to http.Transport
	closed bool
	sweep  *time.Timer
}

// h1Key names an upstream: scheme ("http" or "https") and host:port.
type h1Key struct{ scheme, addr string }

// h1Conn is one upstream connection with its buffers.
type h1Conn struct {
	key    h1Key
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool            // served a request before this one
	raw    syscall.RawConn // the socket, for connAlive (nil until its first check)
}

const (
	h1BufSize = 16 << 10
	// maxResponse1xx bounds interim responses before the final one (as http.Transport does).
	maxResponse1xx = 5
)

func newH1Pool(roots *x509.CertPool) *h1Pool {
	return &h1Pool{
		dialer:      &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		tlsConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		maxIdle:     256,
		idleTimeout: 90 * time.Second,
		idle:        make(map[h1Key][]*h1Conn),
		h2:          make(map[string]bool),
	}
}

// errUseTransport says the request must go through http.Transport instead (the
// upstream negotiated HTTP/2).
var errUseTransport = errors.New("upstream speaks HTTP/2")

// prefersTransport reports whether a TLS upstream is known to speak HTTP/2.
func (p *h1Pool) prefersTransport(scheme, addr string) bool {
	if scheme != "https" {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.h2[addr]
}

// get returns an idle connection to scheme://addr, or dials a new one. fresh forces a
// new connection (the retry after a stale one).
func (p *h1Pool) get(ctx context.Context, scheme, addr string, fresh bool) (*h1Conn, error) {
	key := h1Key{scheme, addr}
	if !fresh {
		now := time.Now()
		p.mu.Lock()
		for {
			l := p.idle[key]
			if len(l) == 0 {
				break
			}
			c := l[len(l)-1]
			l[len(l)-1] = nil
			p.idle[key] = l[:len(l)-1]
			if now.Sub(c.idleAt) > p.idleTimeout {
				c.conn.Close()
				continue
			}
			p.mu.Unlock()
			c.reused = true
			return c, nil
		}
		p.mu.Unlock()
	}
	return p.dial(ctx, scheme, addr, key)
}

func (p *h1Pool) dial(ctx context.Context, scheme, addr string, key h1Key) (*h1Conn, error) {
	conn, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if p.checkConn != nil {
		if err := p.checkConn(conn); err != nil {
			conn.Close()
			return nil, err
		}
	}
	if scheme == "https" {
		host, _, _ := net.SplitHostPort(addr)
		cfg := p.tlsConfig.Clone()
		cfg.ServerName = host
		cfg.NextProtos = []string{"h2", "http/1.1"}
		tc := tls.Client(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, err
		}
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			// Offered HTTP/2: honour it through http.Transport from now on.
			tc.Close()
			p.mu.Lock()
			p.h2[addr] = true
			p.mu.Unlock()
			return nil, errUseTransport
		}
		conn = tc
	}
	return &h1Conn{
		key:  key,
		conn: conn,
		br:   bufio.NewReaderSize(conn, h1BufSize),
		bw:   bufio.NewWriterSize(conn, h1BufSize),
	}, nil
}

// put returns a connection whose last response was read completely and allows reuse.
func (p *h1Pool) put(c *h1Conn) {
	if c.br.Buffered() > 0 {
		// Bytes beyond the response: the upstream is out of step, never reuse it.
		c.conn.Close()
		return
	}
	c.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle[c.key]) >= p.maxIdle {
		p.mu.Unlock()
		c.conn.Close()
		return
	}
	p.idle[c.key] = append(p.idle[c.key], c)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.idleTimeout, p.sweepIdle)
	}
	p.mu.Unlock()
}

// sweepIdle closes connections idle for longer than idleTimeout (the upstream has
// probably dropped them already) and reschedules itself while any remain.
func (p *h1Pool) sweepIdle() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweep = nil
	if p.closed {
		return
	}
	for k, l := range p.idle {
		kept := l[:0]
		for _, c := range l {
			if now.Sub(c.idleAt) > p.idleTimeout {
				c.conn.Close()
			} else {
				kept = append(kept, c)
			}
		}
		clear(l[len(kept):])
		if len(kept) == 0 {
			delete(p.idle, k)
		} else {
			p.idle[k] = kept
		}
	}
	if len(p.idle) > 0 {
		p.sweep = time.AfterFunc(p.idleTimeout/2, p.sweepIdle)
	}
}

// closeIdle closes every idle connection; with final set, the pool keeps none after.
func (p *h1Pool) closeIdle(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, l := range p.idle {
		for _, c := range l {
			c.conn.Close()
		}
		delete(p.idle, k)
	}
	if final {
		p.closed = true
		if p.sweep != nil {
			p.sweep.Stop()
			p.sweep = nil
		}
	}
}

func (p *h1Pool) idleCount(scheme, addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle[h1Key{scheme, addr}])
}

// h1Request is what the hot path sends upstream: already decided, stripped of
// hop-by-hop fields and injected.
type h1Request struct {
	Method     string
	Scheme     string // "http" or "https"
	Addr       string // host:port to connect to (the policy's decision)
	RequestURI string // origin-form
	Host       string // Host header as the client sent it
	Header     http.Header
	Body       io.ReadCloser // nil: no body
	// ContentLength: >0 exactly that many bytes; -1 unknown (sent chunked); 0 no body.
	ContentLength int64
	Trailer       http.Header // names announced by the client; values filled at body EOF
	// On1xx, if set, is told of each interim response (RFC 9110 §15.2) before the final one.
	On1xx func(code int, h http.Header)
	// writeRaw, if set, writes the whole request instead of writeHead (the fast path,
	// fast.go, which copies the client's head); rawBody says it sends a body too.
	writeRaw func(w *bufio.Writer)
	rawBody  bool
	// track, if set, takes the place of a context.AfterFunc on the request's context:
	// it arranges for c's deadline to be set once ctx is done, and returns stop,
	// which reports false if that may have happened (loopConn.trackUpstream).
	track func(c *h1Conn) (stop func() bool)
}

// idempotent reports whether a request may be sent again after a stale connection
// failed it (RFC 9110 §9.2.2): an idempotent method and no body to replay.
func (r *h1Request) idempotent() bool {
	if r.Body != nil || r.rawBody {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header["Idempotency-Key"] != nil || r.Header["X-Idempotency-Key"] != nil
}

// h1Exchange is one request/response on a pooled connection. The caller reads
// Response.Body to the end (or not) and then calls Close exactly once; the connection
// goes back to the pool only when the body was read to EOF and both sides allow reuse.
type h1Exchange struct {
	Response *http.Response
	pool     *h1Pool
	c        *h1Conn
	bodyDone chan error // request body writer's result; nil when there was no body
	stop     func() bool
	eof      bool
	broken   bool
	// closeAfter: the upstream asked to close the connection after this response.
	closeAfter bool
}

// staleConnError marks a failure on a reused connection before any response byte:
// the upstream closed it while idle.
type staleConnError struct{ err error }

func (e staleConnError) Error() string { return e.err.Error() }
func (e staleConnError) Unwrap() error { return e.err }

// roundTrip sends req and reads the response head. On a reused connection that turns
// out stale, an idempotent request is retried once on a new connection.
func (p *h1Pool) roundTrip(ctx context.Context, req *h1Request) (*h1Exchange, error) {
	c, err := p.get(ctx, req.Scheme, req.Addr, false)
	if err != nil {
		return nil, err
	}
	x, err := p.send(ctx, c, req)
	if err != nil {
		return nil, err
	}
	if err := x.readResponse(ctx, req.Method, req.On1xx); err != nil {
		return nil, err
	}
	return x, nil
}

// send sends req on c (from get) and waits for the first byte of the answer.
//
// A reused connection is checked first (connAlive): closed by the upstream, or
// holding bytes nobody asked for, it is replaced by a new one. Stray bytes that
// arrived after the last answer was read (a buggy upstream's second response, the
// rest of a body longer than announced) would otherwise be read as the answer to
// this request, and every later client on the connection would get the answer
// meant for the one before. Responses are matched to requests by order only.
//
// A reused connection that the upstream closes in the moment between the check and
// the write still fails: then an idempotent request is sent again, once, on a new
// connection.
func (p *h1Pool) send(ctx context.Context, c *h1Conn, req *h1Request) (*h1Exchange, error) {
	if c.reused && !connAlive(c) {
		c.conn.Close()
		var err error
		if c, err = p.get(ctx, req.Scheme, req.Addr, true); err != nil {
			return nil, err
		}
	}
	x, err := p.write(ctx, c, req)
	if err == nil {
		return x, nil // (the errors.As target below would be allocated on every request)
	}
	var stale staleConnError
	if errors.As(err, &stale) && req.idempotent() && ctx.Err() == nil {
		if c, err = p.get(ctx, req.Scheme, req.Addr, true); err != nil {
			return nil, err
		}
		x, err = p.write(ctx, c, req)
	}
	if errors.As(err, &stale) {
		err = stale.err
	}
	return x, err
}

// write sends the request on c and waits for the first byte of the answer.
func (p *h1Pool) write(ctx context.Context, c *h1Conn, req *h1Request) (*h1Exchange, error) {
	x := &h1Exchange{pool: p, c: c}
	// A client that goes away unblocks whatever this exchange is waiting on.
	if req.track != nil {
		x.stop = req.track(c)
	} else {
		x.stop = context.AfterFunc(ctx, func() { c.conn.SetDeadline(aLongTimeAgo) })
	}
	if req.writeRaw != nil {
		req.writeRaw(c.bw)
	} else {
		writeHead(c.bw, req)
	}
	if err := c.bw.Flush(); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, x.fail(ctx, err, false)
	}
	if req.Body != nil {
		x.bodyDone = make(chan error, 1)
		go func() {
			err := writeBody(c.bw, req)
			if err != nil {
				// A broken upload (client gone, bad chunk) must not leave the reader
				// waiting for an answer the upstream will never give.
				c.conn.Close()
			}
			x.bodyDone <- err
		}()
	}
	// No byte of an answer yet: an error here on a reused connection means the
	// upstream had closed it while idle.
	if _, err := c.br.Peek(1); err != nil {
		return nil, x.fail(ctx, err, false)
	}
	return x, nil
}

// fail ends an exchange that broke before its response head was read: the
// connection is closed (which also ends a body writer blocked on the socket) and
// the exchange is finished.
func (x *h1Exchange) fail(ctx context.Context, err error, gotBytes bool) error {
	x.stop()
	c := x.c
	x.c = nil
	c.conn.Close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if c.reused && !gotBytes {
		return staleConnError{err}
	}
	return err
}

// readResponse reads the response head with net/http's parser into x.Response,
// passing interim responses to on1xx. On an error the exchange is finished.
func (x *h1Exchange) readResponse(ctx context.Context, method string, on1xx func(code int, h http.Header)) error {
	head := &http.Request{Method: method}
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(x.c.br, head)
		if err != nil {
			return x.fail(ctx, err, true)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// Only upgrade requests may switch, and those go through http.Transport.
			return x.fail(ctx, errors.New("upstream switched protocols without an upgrade request"), true)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			if n >= maxResponse1xx {
				return x.fail(ctx, errors.New("too many 1xx informational responses"), true)
			}
			if on1xx != nil {
				on1xx(resp.StatusCode, resp.Header)
			}
			continue
		}
		if resp.Body == http.NoBody {
			x.eof = true // HEAD, 204, 304, Content-Length: 0
		}
		x.closeAfter = resp.Close
		resp.Body = &h1Body{x: x, r: resp.Body}
		x.Response = resp
		return nil
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// uploadSettle is how long Close waits for the request-body writer to report
// after the whole response arrived.
const uploadSettle = 20 * time.Millisecond

// h1Body notes whether the response body was read to EOF.
type h1Body struct {
	x *h1Exchange
	r io.ReadCloser
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.x.eof = true
	} else if err != nil {
		b.x.broken = true
	}
	return n, err
}

func (b *h1Body) Close() error { return b.x.Close() }

// Close finishes the exchange: the connection returns to the pool if the response was
// read completely, the request body was sent completely, the client did not go away
// and neither side asked to close; otherwise it is closed.
func (x *h1Exchange) Close() error {
	if x.c == nil {
		return nil
	}
	c := x.c
	x.c = nil
	fired := !x.stop()
	reuse := x.eof && !x.broken && !fired && !x.closeAfter
	if x.bodyDone != nil && reuse {
		// Reuse only if the upload is complete. The writer has usually just
		// finished (the upstream read the body before answering) but may not
		// have reported yet, so give it a moment; a writer still busy after that
		// (an upstream that answered early while a slow client uploads) is ended
		// by closing the connection, never waited for.
		t := time.NewTimer(uploadSettle)
		select {
		case err := <-x.bodyDone:
			reuse = err == nil
		case <-t.C:
			reuse = false
		}
		t.Stop()
	}
	if !reuse {
		c.conn.Close()
		return nil
	}
	x.pool.put(c)
	return nil
}

// writeHead writes an HTTP/1.1 request head (RFC 9112 §3) with the framing the body
// needs. Header values have already been checked by the server that parsed them; a
// value with a line break is still never written as one.
func writeHead(w *bufio.Writer, req *h1Request) {
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.RequestURI)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(req.Host)
	w.WriteString("\r\n")
	for k, vv := range req.Header {
		if k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" || k == "Trailer" {
			continue // framing is ours
		}
		for _, v := range vv {
			w.WriteString(k)
			w.WriteString(": ")
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	switch {
	case req.Body != nil && req.ContentLength > 0:
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(req.ContentLength, 10))
		w.WriteString("\r\n")
	case req.Body != nil:
		w.WriteString("Transfer-Encoding: chunked\r\n")
		if len(req.Trailer) > 0 {
			names := make([]string, 0, len(req.Trailer))
			for k := range req.Trailer {
				names = append(names, k)
			}
			w.WriteString("Trailer: ")
			w.WriteString(strings.Join(names, ", "))
			w.WriteString("\r\n")
		}
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		w.WriteString("Content-Length: 0\r\n") // as http.Transport does for a body-less POST
	}
	w.WriteString("\r\n")
}

// writeBody streams the request body: exactly ContentLength bytes, or chunked
// (RFC 9112 §7.1) with the client's trailers after the last chunk.
func writeBody(w *bufio.Writer, req *h1Request) error {
	defer req.Body.Close()
	buf := make([]byte, h1BufSize)
	if req.ContentLength > 0 {
		n, err := io.CopyBuffer(w, io.LimitReader(req.Body, req.ContentLength), buf)
		if err == nil && n < req.ContentLength {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		return w.Flush()
	}
	for {
		n, rerr := req.Body.Read(buf)
		if n > 0 {
			w.WriteString(strconv.FormatInt(int64(n), 16))
			w.WriteString("\r\n")
			w.Write(buf[:n])
			w.WriteString("\r\n")
			// Flush each chunk: the client may be streaming slowly and the upstream
			// should see data as it comes.
			if err := w.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	w.WriteString("0\r\n")
	for k, vv := range req.Trailer {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
	return w.Flush()
}
