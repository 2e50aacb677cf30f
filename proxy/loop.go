package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The request loop, for connections on the listen port and inside intercepted
// tunnels (once TLS is terminated). Requests are read and answered here, in the
// connection's own goroutine, rather than by an http.Server. Per request, net/http's
// server starts a goroutine
// that reads ahead on the connection (to notice a client that leaves) and stops it
// again with two deadline changes; on a 2-core machine that hand-off and its extra
// read(2) cost more than parsing (bench/HISTORY.md). Here nothing runs beside the
// exchange unless the upstream takes longer than watchAfter to answer.
//
// The loop reads the head without consuming it, parses it with net/http's own
// http.ReadRequest, and serves only plain HTTP/1.1 requests that need nothing more
// than that: anything else (on the listen port CONNECT and the status page; HTTP/1.0,
// upgrades, Expect: 100-continue, a head larger than the buffer, a head net/http
// rejects, a bad Host or header field) hands the connection, with the head not yet
// served, to the http.Server that served it before the loop existed (the listen
// port's, or the intercepting one in mitm.go), which serves it from then on. That
// server is the reference: the loop never answers differently from it, only sooner.

const (
	loopBufSize = 16 << 10
	// loopIdleTimeout and loopHeaderTimeout are the http.Server's IdleTimeout and
	// ReadHeaderTimeout (newMITMServer).
	loopIdleTimeout   = 2 * time.Minute
	loopHeaderTimeout = 10 * time.Second
	// watchAfter is how long an exchange runs before the loop starts watching the
	// client for a hang-up, so that a client that leaves a slow request (a long
	// poll) cancels it upstream.
	watchAfter = 200 * time.Millisecond
)

// loopConn is one client connection served by the loop: on the listen port, or
// inside an intercepted tunnel (TLS already terminated).
type loopConn struct {
	s        *Server
	c        net.Conn
	inTunnel bool
	tunnel   Decision // inTunnel: the CONNECT's decision
	// tunnelAddr is tunnel.Addr(), which every request in the tunnel must address.
	tunnelAddr string
	br         *bufio.Reader
	bw         *bufio.Writer
	head       []byte // the current request's head, as read
	// fr, fresp and body are the fast path's (fast.go), kept to reuse their memory.
	fr      fastReq
	fresp   fastResp
	body    []byte
	decided fastDecision
	// req is the fast path's upstream request; writeRawFn (tc.writeRaw) writes it
	// with rawTok and rawBody while the pool sends it.
	req        h1Request
	writeRawFn func(*bufio.Writer)
	rawTok     *Token
	rawBody    []byte
	cw         clientWatch
	// up is the fast path's upstream connection while an exchange runs on it: a
	// hook on ctx, registered once per connection, interrupts it when the client
	// leaves or the proxy shuts down (trackUpstream).
	up        atomic.Pointer[h1Conn]
	trackFn   func(*h1Conn) func() bool
	untrackFn func() bool
	// deadline is the read deadline set on c (zero: none).
	deadline time.Time
	linger   bool // close with lingerClose
	ctx      context.Context
	cancel   context.CancelFunc
	w        loopWriter
}

// serveTunnel serves an intercepted connection until it closes, fails, or is handed
// to the intercepting http.Server.
func (s *Server) serveTunnel(c net.Conn, tunnel Decision) {
	s.serveLoop(&loopConn{s: s, c: c, inTunnel: true, tunnel: tunnel, tunnelAddr: tunnel.Addr()})
}

// serveConn serves a connection accepted on the listen port until it closes, fails,
// or is handed to the listen port's http.Server (CONNECT, the status page, and all
// the loop does not serve). The connection is tracked until then, so that Shutdown
// closes it.
func (s *Server) serveConn(c net.Conn) {
	s.mu.Lock()
	s.hijacked[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.hijacked, c)
		s.mu.Unlock()
	}()
	if reason, uid, known := s.peers.refusal(c); reason != "" {
		s.refusePeer(c, reason, uid, known)
		return
	}
	s.serveLoop(&loopConn{s: s, c: c})
}

func (s *Server) serveLoop(tc *loopConn) {
	tc.br = bufio.NewReaderSize(tc.c, loopBufSize)
	tc.bw = bufio.NewWriterSize(tc.c, loopBufSize)
	tc.ctx, tc.cancel = context.WithCancel(tc.s.base)
	defer tc.cancel()
	tc.trackFn, tc.untrackFn, tc.writeRawFn = tc.trackUpstream, tc.untrackUpstream, tc.writeRaw
	defer context.AfterFunc(tc.ctx, func() {
		if c := tc.up.Load(); c != nil {
			c.conn.SetDeadline(aLongTimeAgo)
		}
	})()
	switch {
	case tc.loop():
		// handed over
	case tc.linger:
		tc.lingerClose()
	default:
		tc.c.Close()
	}
}

// trackUpstream makes c the connection the ctx hook interrupts (h1Request.track):
// the same as a context.AfterFunc per exchange, without registering one each time.
func (tc *loopConn) trackUpstream(c *h1Conn) func() bool {
	tc.up.Store(c)
	if tc.ctx.Err() != nil {
		c.conn.SetDeadline(aLongTimeAgo) // the hook may have run before the store
	}
	return tc.untrackFn
}

// untrackUpstream ends trackUpstream; false if the hook may have interrupted the
// connection (it must not be reused).
func (tc *loopConn) untrackUpstream() bool {
	tc.up.Store(nil)
	return tc.ctx.Err() == nil
}

// acceptLoop accepts connections on the listen port until it is closed.
func (s *Server) acceptLoop(ln net.Listener) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.closing.Load() {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("proxy accept failed; retrying", "err", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go s.serveConn(c)
	}
}

// loop serves requests; it returns true when the connection was handed over (and
// must not be closed).
func (tc *loopConn) loop() (handedOver bool) {
	wait := loopHeaderTimeout // a new connection's first request is due at once
	for !tc.s.closing.Load() {
		if tc.br.Buffered() == 0 {
			tc.setReadDeadline(time.Now(), wait)
			if _, err := tc.br.Peek(1); err != nil {
				return false // closed by the client, idle too long, or shutting down
			}
		}
		n, err := headLen(tc.br, tc.setReadDeadline)
		if errors.Is(err, bufio.ErrBufferFull) {
			// A head larger than the loop's buffer (large cookies, say): the server
			// serves it, unless it is too large even for the server.
			head, err := tc.readLongHead()
			switch {
			case errors.Is(err, errHeadTooLarge):
				tc.writeAndClose(refuse(http.StatusRequestHeaderFieldsTooLarge, "request_header_too_large",
					fmt.Sprintf("the request head is larger than %d KiB", maxHeaderBytes>>10)))
				tc.linger = true
				return false
			case err != nil:
				return false
			}
			tc.head = head
			return tc.handOver(true)
		}
		if err != nil {
			return false
		}
		b, _ := tc.br.Peek(n)
		tc.head = append(tc.head[:0], b...)
		if served, keep := tc.serveFast(n); served {
			if !keep {
				return false
			}
			wait = loopIdleTimeout
			continue
		}
		buffered := tc.br.Buffered()
		req, err := http.ReadRequest(tc.br)
		// The whole head was buffered, so ReadRequest read from the buffer only:
		// this is how much of it it took.
		switch took := buffered - tc.br.Buffered(); {
		case took > n:
			return false // past the head: never happens; the head cannot be replayed
		case err != nil:
			// A head net/http cannot read: answered here, in the shape of every
			// answer the proxy makes up (net/http's own is a bare "400 Bad Request").
			tc.refuseHead(err)
			tc.linger = true // let the client read it before the close
			return false
		case took != n:
			return false // a head shorter than the scan found: never happens
		}
		if !loopable(req, tc.inTunnel, tc.head) {
			return tc.handOver(true) // the server serves what the loop does not
		}
		if !tc.serve(req) {
			return false
		}
		wait = loopIdleTimeout
	}
	return false
}

// refuseHead answers a request head that http.ReadRequest refused, with its reason,
// and the connection closes: what follows the head cannot be told apart. The status
// is net/http's: 501 for a transfer coding it does not know, 400 otherwise.
func (tc *loopConn) refuseHead(err error) {
	status := http.StatusBadRequest
	if strings.Contains(err.Error(), "unsupported transfer encoding") {
		status = http.StatusNotImplemented
	}
	tc.writeAndClose(refuse(status, "bad_request", "the request could not be read: "+err.Error()))
}

// writeAndClose writes d's answer with Connection: close; the caller closes.
func (tc *loopConn) writeAndClose(d Decision) {
	body := refusalBody(d)
	h := refusalHeader(d, len(body))
	h.Set("Connection", "close")
	tc.bw.WriteString("HTTP/1.1 " + strconv.Itoa(d.Status) + " " + http.StatusText(d.Status) + "\r\n")
	writeFields(tc.bw, h)
	tc.bw.WriteString("\r\n")
	tc.bw.Write(body)
	_ = tc.bw.Flush()
}

// setReadDeadline makes the connection's reads time out at now+d. A deadline is
// moved only when it would come more than a tenth of d too early or too late, so a
// busy connection does not reset its timer for every request: the idle timeout of
// a connection that just served a request may end up to a tenth shorter or longer.
func (tc *loopConn) setReadDeadline(now time.Time, d time.Duration) {
	want := now.Add(d)
	if diff := want.Sub(tc.deadline); diff > d/10 || diff < -d/10 {
		tc.deadline = want
		tc.c.SetReadDeadline(want)
	}
}

// handOver gives the connection to its http.Server. With replay set, the head the
// loop has read is read again first.
func (tc *loopConn) handOver(replay bool) bool {
	tc.c.SetReadDeadline(time.Time{})
	rc := &replayConn{Conn: tc.c, br: tc.br}
	if replay {
		rc.head = bytes.Clone(tc.head)
	}
	if !tc.inTunnel {
		tc.s.handedOverListen.Add(1)
		return tc.s.srvLn.push(rc) // false: shutting down
	}
	tc.s.handedOver.Add(1)
	return tc.s.mitmLn.push(&mitmConn{Conn: rc, tunnel: tc.tunnel})
}

// replayConn reads what the loop had read (head), then what the loop's buffer holds,
// then the connection itself.
type replayConn struct {
	net.Conn
	head []byte
	br   *bufio.Reader
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

// drained reports whether everything replayed and buffered has been read.
func (c *replayConn) drained() bool {
	return len(c.head) == 0 && (c.br == nil || c.br.Buffered() == 0)
}

// WriteTo lets a blind tunnel's copy (io.Copy in goproxy) move the rest of the
// stream with the connection's own WriteTo (splice(2) on Linux) once the replayed
// and buffered bytes are out, rather than through Read and a buffer.
func (c *replayConn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if len(c.head) > 0 {
		n, err := w.Write(c.head)
		total += int64(n)
		c.head = c.head[n:]
		if err != nil {
			return total, err
		}
	}
	var src io.Reader = c.Conn
	if c.br != nil {
		src, c.br = c.br, nil // bufio.Reader.WriteTo: its buffer, then the connection's WriteTo
	}
	n, err := io.Copy(w, src)
	return total + n, err
}

// NetConn returns the connection underneath.
func (c *replayConn) NetConn() net.Conn { return c.Conn }

// CloseWrite and CloseRead let a blind tunnel (goproxy) half-close the client's side
// as it does for a plain TCP connection.
func (c *replayConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *replayConn) CloseRead() error {
	if hc, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return hc.CloseRead()
	}
	return nil
}

var errHeadTooLarge = errors.New("request head too large")

// readLongHead takes a request head that does not fit the loop's buffer out of it,
// reading on into a buffer of its own until the head ends: the bytes read (the
// head, perhaps with more after it), for the server to read again. Past
// maxHeaderBytes it stops with errHeadTooLarge, which the loop answers in the shape
// of every answer the proxy makes up (the server's own 431 is plain text).
func (tc *loopConn) readLongHead() ([]byte, error) {
	var read []byte
	for {
		b, _ := tc.br.Peek(tc.br.Buffered())
		from := max(0, len(read)-2) // the blank line may straddle two reads
		read = append(read, b...)
		tc.br.Discard(len(b))
		rest := read[from:]
		if bytes.Contains(rest, []byte("\n\n")) || bytes.Contains(rest, []byte("\n\r\n")) {
			return read, nil
		}
		if len(read) > maxHeaderBytes {
			return nil, errHeadTooLarge
		}
		tc.setReadDeadline(time.Now(), loopHeaderTimeout)
		if _, err := tc.br.Peek(1); err != nil {
			return nil, err
		}
	}
}

// headLen returns the length of the request head at the start of br, blank line
// included, reading more as needed (with the header timeout set through deadline).
// bufio.ErrBufferFull means the head does not fit.
func headLen(br *bufio.Reader, deadline func(now time.Time, d time.Duration)) (int, error) {
	from := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		for i := from; i < len(buf); {
			j := bytes.IndexByte(buf[i:], '\n')
			if j < 0 {
				break
			}
			i += j + 1
			// A line ends at i; the head ends with an empty line ("\n" or "\r\n").
			if i < len(buf) && buf[i] == '\n' {
				return i + 1, nil
			}
			if i+1 < len(buf) && buf[i] == '\r' && buf[i+1] == '\n' {
				return i + 2, nil
			}
		}
		if len(buf) == br.Size() {
			return 0, bufio.ErrBufferFull
		}
		// Rescan the last two bytes too: the blank line may straddle the read.
		from = max(0, len(buf)-2)
		deadline(time.Now(), loopHeaderTimeout)
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return 0, err
		}
	}
}

// loopable reports whether the loop serves req exactly as the http.Server would:
// HTTP/1.1, no upgrade, no 100-continue, one valid Host field and valid header fields
// (the checks net/http's server adds to http.ReadRequest). On the listen port that
// is an absolute-form request to forward (everything else there is CONNECT or the
// status page); inside a tunnel, an origin-form one.
func loopable(req *http.Request, inTunnel bool, head []byte) bool {
	if req.ProtoMajor != 1 || req.ProtoMinor != 1 || req.Method == http.MethodConnect || req.Method == "PRI" {
		return false
	}
	// http.ReadRequest has removed the Host field and set req.Host from it, or from
	// an absolute-form target.
	if inTunnel {
		if req.URL.Host != "" || req.Host == "" || !httpguts.ValidHostHeader(req.Host) {
			return false
		}
	} else {
		if req.URL.Host == "" {
			return false
		}
		if host, ok := hostField(head); !ok || !httpguts.ValidHostHeader(host) {
			return false
		}
	}
	h := req.Header
	if h["Expect"] != nil || h["Upgrade"] != nil || httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return false
	}
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// hostField returns the value of the head's one Host field, as net/http's server
// sees it (FuzzLoopHead); false if there is none, more than one, or the head folds a
// line.
func hostField(head []byte) (string, bool) {
	var value []byte
	n := 0
	for i := bytes.IndexByte(head, '\n'); i >= 0 && i+1 < len(head); {
		line := head[i+1:]
		j := bytes.IndexByte(line, '\n')
		if j < 0 {
			break
		}
		line = line[:j]
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return "", false // a folded line (obs-fold): leave the head to net/http
		}
		if len(line) >= 5 && bytes.EqualFold(line[:5], []byte("host:")) {
			value = line[5:]
			n++
		}
		i += j + 1
	}
	if n != 1 {
		return "", false
	}
	return string(bytes.TrimSpace(value)), true
}

// serve answers one request; false means the connection must close.
func (tc *loopConn) serve(req *http.Request) bool {
	var body *loopBody
	if req.Body != http.NoBody {
		body = &loopBody{r: req.Body}
		req.Body = body
		// An upload is read at the upstream's pace, however long that takes.
		tc.deadline = time.Time{}
		tc.c.SetReadDeadline(tc.deadline)
	}
	req = req.WithContext(tc.ctx)
	w := &tc.w
	w.reset(tc.bw, req.Method, req.Close, tc.s.closing.Load())
	// With no request body, nothing reads the connection while the exchange runs:
	// past watchAfter, watch it for a hang-up. (With a body, a client that leaves
	// fails the upload, which ends the exchange.)
	var wt *clientWatch
	if body == nil {
		wt = tc.watch()
	}
	ok := tc.handle(w, req)
	if wt != nil && !wt.stop() {
		ok = false // the client left
	}
	if ok {
		ok = w.finish() == nil
	}
	if err := tc.bw.Flush(); err != nil {
		return false
	}
	if ok && body != nil && !body.eof.Load() {
		// The upstream answered without reading the whole upload. As net/http
		// does, read a little more of it to keep the connection; past that, what
		// is left cannot be told from a next request: close, but first let the
		// client read the answer (it may still be sending, and closing a socket
		// with unread data resets it, answer and all).
		if !body.discard(tc, maxPostHandlerRead) {
			tc.linger = true
			return false
		}
	}
	return ok && !w.closeAfter && tc.ctx.Err() == nil
}

const (
	// maxPostHandlerRead is how much of an upload the upstream left unread the loop
	// reads to keep the connection (net/http's figure).
	maxPostHandlerRead = 256 << 10
	// lingerTime is how long a connection closed with an upload still arriving
	// keeps reading before it closes (net/http's rstAvoidanceDelay).
	lingerTime = 500 * time.Millisecond
)

// lingerClose closes the connection after the client has had time to read the
// last answer: the write side is shut (TLS close_notify, then FIN), and what the client
// still sends is read and dropped for up to lingerTime.
func (tc *loopConn) lingerClose() {
	raw := tc.c
	if t, ok := raw.(*tls.Conn); ok {
		t.SetWriteDeadline(time.Now().Add(lingerTime))
		t.CloseWrite()
		raw = t.NetConn()
	}
	if cw, ok := raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	raw.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, raw)
	tc.c.Close()
}

// handle runs the proxy's handler; false if it aborted (a broken stream).
func (tc *loopConn) handle(w *loopWriter, req *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			ok = false
			if p != http.ErrAbortHandler {
				tc.s.log.Error("panic serving an intercepted request", "host", tc.tunnelAddr, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
		}
	}()
	if tc.inTunnel {
		tc.s.serveInTunnel(w, req, tc.tunnel)
	} else {
		tc.s.inflight.Add(1)
		defer tc.s.inflight.Add(-1)
		tc.s.serveProxied(w, req)
	}
	return true
}

// clientWatch notices a client that hangs up while its request is being served.
// Each connection has one, armed for each request that needs it.
type clientWatch struct {
	tc *loopConn
	t  *time.Timer // runs run; made on the first arm, reset on the next ones
	// mu guards armed, started and done. A run left over from an earlier arm may
	// start watching early for the current one; stop then ends it as any other.
	mu       sync.Mutex
	armed    bool // between watch and stop
	started  bool // a watching goroutine has begun reading for this arm
	done     chan struct{}
	stopping atomic.Bool
	gone     atomic.Bool
}

// watch starts watching the client after watchAfter.
func (tc *loopConn) watch() *clientWatch {
	w := &tc.cw
	w.mu.Lock()
	w.armed, w.started = true, false
	w.gone.Store(false)
	w.stopping.Store(false)
	w.mu.Unlock()
	if w.t == nil {
		w.tc = tc
		w.t = time.AfterFunc(watchAfter, w.run)
	} else {
		w.t.Reset(watchAfter)
	}
	return w
}

// run waits for the client to send something (a pipelined request, left in the
// buffer) or to go away (cancels the connection's context).
func (w *clientWatch) run() {
	w.mu.Lock()
	if !w.armed || w.started {
		w.mu.Unlock()
		return
	}
	w.started = true
	done := make(chan struct{})
	w.done = done
	// A slow answer (a long poll) may take longer than the idle timeout. The
	// deadline is cleared before stop can see started, so stop's own deadline
	// always comes after it.
	w.tc.deadline = time.Time{}
	w.tc.c.SetReadDeadline(w.tc.deadline)
	w.mu.Unlock()
	defer close(done)
	if _, err := w.tc.br.Peek(1); err != nil && !w.stopping.Load() {
		w.gone.Store(true)
		w.tc.cancel()
	}
}

// stop ends the watch and reports whether the client is still there.
func (w *clientWatch) stop() bool {
	w.t.Stop()
	w.mu.Lock()
	w.armed = false
	started, done := w.started, w.done
	w.mu.Unlock()
	if started {
		// Interrupt the read (a timeout leaves the buffer and the TLS state usable),
		// then let the connection wait again.
		w.stopping.Store(true)
		w.tc.c.SetReadDeadline(aLongTimeAgo)
		<-done
		w.tc.c.SetReadDeadline(w.tc.deadline)
	}
	return !w.gone.Load()
}

// loopBody notes whether the request body was read to its end. It may be read by the
// exchange's upload goroutine while the loop checks it.
type loopBody struct {
	r   io.ReadCloser
	eof atomic.Bool
}

func (b *loopBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// Close leaves the rest unread: the loop decides what to do with it.
func (b *loopBody) Close() error { return nil }

// discard reads and drops the rest of the body if it ends within max bytes and
// arrives within a second; true if it did. (The exchange's upload goroutine may still
// be reading it too: net/http's body reader takes turns.)
func (b *loopBody) discard(tc *loopConn, max int64) bool {
	tc.setReadDeadline(time.Now(), time.Second)
	_, err := io.CopyN(io.Discard, b, max)
	return err == io.EOF || b.eof.Load()
}

// loopWriter is the http.ResponseWriter of the loop: an HTTP/1.1 response written
// into the connection's buffer, framed with Content-Length when the handler set one
// and chunked otherwise, flushed when the handler flushes and when the response ends.
type loopWriter struct {
	bw          *bufio.Writer
	method      string // the request's
	h           http.Header
	wroteHeader bool
	bodyOK      bool  // the status and method allow a body
	chunked     bool  // body sent chunked
	length      int64 // Content-Length, -1 if none
	written     int64
	trailers    []string // names announced in Trailer
	closeAfter  bool
	fastDone    bool // the fast path wrote the whole response itself (fast.go)
}

func (w *loopWriter) reset(bw *bufio.Writer, method string, close, closing bool) {
	h := w.h
	if h == nil {
		h = make(http.Header)
	} else {
		clear(h) // the last handler has returned and kept no reference
	}
	*w = loopWriter{bw: bw, method: method, h: h, length: -1, closeAfter: close || closing, trailers: w.trailers[:0]}
}

func (w *loopWriter) Header() http.Header { return w.h }

func (w *loopWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An interim response: sent at once; the final one follows.
		w.writeStatus(code)
		writeFields(w.bw, w.h)
		w.bw.WriteString("\r\n")
		w.bw.Flush()
		return
	}
	w.wroteHeader = true
	h := w.h
	w.bodyOK = w.method != http.MethodHead && code != http.StatusNoContent && code != http.StatusNotModified
	for _, v := range h["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = http.CanonicalHeaderKey(strings.TrimSpace(name)); name != "" {
				w.trailers = append(w.trailers, name)
			}
		}
	}
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.length = n
		}
	}
	delete(h, "Transfer-Encoding")
	if w.bodyOK && (w.length < 0 || len(w.trailers) > 0) {
		w.chunked, w.length = true, -1
		delete(h, "Content-Length")
		h["Transfer-Encoding"] = []string{"chunked"}
	}
	if w.closeAfter {
		h["Connection"] = []string{"close"}
	}
	if h["Date"] == nil {
		h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}
	w.writeStatus(code)
	writeFields(w.bw, h)
	w.bw.WriteString("\r\n")
}

// writeFields writes header fields as they are in the map (net/http sorts them
// first, which costs more than the rest of the head). A line break inside a value
// never goes out as one.
func writeFields(bw *bufio.Writer, h http.Header) {
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
}

func (w *loopWriter) writeStatus(code int) {
	w.bw.WriteString("HTTP/1.1 ")
	w.bw.WriteString(strconv.Itoa(code))
	w.bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		w.bw.WriteString(text)
	} else {
		w.bw.WriteString("status code " + strconv.Itoa(code))
	}
	w.bw.WriteString("\r\n")
}

func (w *loopWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyOK {
		if w.method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.chunked {
		w.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		w.bw.WriteString("\r\n")
		n, err := w.bw.Write(p)
		w.bw.WriteString("\r\n")
		w.written += int64(n)
		return n, err
	}
	var tooLong error
	if rest := w.length - w.written; int64(len(p)) > rest {
		p, tooLong = p[:rest], http.ErrContentLength
	}
	n, err := w.bw.Write(p)
	w.written += int64(n)
	if err == nil {
		err = tooLong
	}
	return n, err
}

// FlushError sends what is buffered (http.NewResponseController uses it).
func (w *loopWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.bw.Flush()
}

func (w *loopWriter) Flush() { _ = w.FlushError() }

// finish ends the response: the last chunk and trailers, or a note to close the
// connection when fewer bytes were written than announced.
func (w *loopWriter) finish() error {
	if !w.wroteHeader {
		if w.h["Content-Length"] == nil {
			w.h["Content-Length"] = []string{"0"}
		}
		w.WriteHeader(http.StatusOK)
	}
	switch {
	case w.chunked:
		w.bw.WriteString("0\r\n")
		for k, vv := range w.h {
			name, prefixed := strings.CutPrefix(k, http.TrailerPrefix)
			if !prefixed {
				continue
			}
			w.writeTrailer(http.CanonicalHeaderKey(name), vv)
		}
		for _, name := range w.trailers {
			w.writeTrailer(name, w.h[name])
		}
		w.bw.WriteString("\r\n")
	case w.bodyOK && w.written < w.length:
		w.closeAfter = true // the client would wait for the missing bytes
	}
	return w.bw.Flush()
}

func (w *loopWriter) writeTrailer(name string, vv []string) {
	if !httpguts.ValidHeaderFieldName(name) {
		return
	}
	for _, v := range vv {
		if !httpguts.ValidHeaderFieldValue(v) {
			continue
		}
		w.bw.WriteString(name)
		w.bw.WriteString(": ")
		w.bw.WriteString(v)
		w.bw.WriteString("\r\n")
	}
}
