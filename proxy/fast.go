package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"
)

// The fast path of the request loop (loop.go) carries the common exchange, a small
// HTTP/1.1 request to a gateway or another plain-HTTP host and a Content-Length
// answer, without building net/http's Request, Response and header maps: the head
// the client sent is checked field by field and copied upstream (hop-by-hop fields
// dropped, the token added), and the upstream's head is copied back the same way.
// On this 2-core VM net/http's two parsers and their allocations were the largest
// cost left that was ours (bench/HISTORY.md).
//
// It takes only heads in a strict subset of HTTP/1.1, which net/http reads the same
// way (FuzzFastHead checks that against http.ReadRequest): a method from a fixed
// list; an http:// absolute-form target on the listen port, an origin-form one in a
// tunnel, made of characters net/http sends on unchanged; CRLF line ends; field
// names of token characters and values of visible ASCII, space and tab; exactly one
// Host; at most one Content-Length, with the whole body (at most fastMaxBody) already
// buffered; a Connection field only of "close" or "keep-alive". Anything else
// (Transfer-Encoding, Expect, Upgrade, TE, Trailer, obs-fold, other characters) is
// declined before a byte is consumed, and the loop serves the request with
// net/http's parser as before. An upstream answer outside the same subset (chunked,
// close-delimited, 1xx, Transfer-Encoding, Trailer, an event stream) is read with
// net/http's http.ReadResponse and copied as on the other path.

const (
	fastMaxFields = 64
	// fastMaxBody is the largest request body the fast path takes, and only when it
	// is already in the loop's buffer: it is written upstream with the head, so an
	// upstream that answers early cannot leave the exchange waiting on an upload.
	fastMaxBody = 8 << 10
)

// fastField is one header field, as slices of the head it was read from.
type fastField struct {
	name, value []byte
	auth        bool // an Authorization field (replaced when the token goes in that field)
}

// fastReq is a request head the fast path took. Its slices point into the loop's copy
// of the head (loopConn.head), valid until the next request.
type fastReq struct {
	method     string // one of fastMethods
	authority  []byte // absolute-form: the target's host[:port]; origin-form: nil
	uri        []byte // the request-target to send upstream (origin-form)
	host       []byte // the Host field's value
	headFields        // length: 0 when there is no Content-Length
}

// fastResp is an upstream's response head the fast path took.
type fastResp struct {
	statusLine []byte // without CRLF
	status     int
	date       bool // has a Date field
	headFields      // length: -1 when there is no Content-Length
}

// headFields is what a request head and a response head share: the framing and the
// fields to pass on.
type headFields struct {
	length int64 // Content-Length
	close  bool  // Connection: close
	fields []fastField
}

// read reads the field lines of a head up to its blank line, which must end the
// head. Content-Length (at most one, passed on when passLength is set) and
// Connection ("close" or "keep-alive", never passed on) go into h; hop-by-hop fields
// are dropped; a field the fast path does not handle declines the head. Every other
// field goes to other, which says whether to pass it on or to decline the head.
func (h *headFields) read(rest []byte, passLength bool, other func(kind fieldKind, value []byte) (pass, ok bool)) bool {
	h.length, h.close, h.fields = -1, false, h.fields[:0]
	for {
		name, value, r, done, ok := nextField(rest)
		if !ok {
			return false
		}
		if done {
			return len(r) == 0
		}
		rest = r
		pass, kind := true, kindOf(name)
		switch kind {
		case fieldContentLength:
			n, ok := fastLength(value)
			if !ok || h.length >= 0 {
				return false
			}
			h.length, pass = n, passLength
		case fieldConnection:
			c, ok := fastConnection(value)
			if !ok {
				return false
			}
			h.close, pass = h.close || c, false
		case fieldDrop:
			pass = false
		case fieldDecline:
			return false
		default:
			if pass, ok = other(kind, value); !ok {
				return false
			}
		}
		if !pass {
			continue
		}
		if len(h.fields) == fastMaxFields {
			return false
		}
		h.fields = append(h.fields, fastField{name: name, value: value, auth: kind == fieldAuthorization})
	}
}

var fastMethods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func fastMethod(b []byte) string {
	for _, m := range fastMethods {
		if string(b) == m {
			return m
		}
	}
	return ""
}

// tchar is RFC 9110 §5.6.2's token character set.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// pathChar is what a path may hold for net/http to send it on unchanged
// (url.URL.EscapedPath keeps a RawPath of only these); '%' is checked apart.
var pathChar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = tchar[c]
	}
	for _, c := range "/:@!$&'()*+,;=[]" {
		t[c] = true
	}
	t['^'], t['`'], t['|'], t['#'], t['%'] = false, false, false, false, false
	return t
}()

// hostChar is what the fast path accepts in a host name (no IPv6 literal, no
// percent-encoding, no userinfo).
var hostChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	t['.'], t['-'], t['_'] = true, true, true
	return t
}()

// cutLine splits off the head's first line, which must end in CRLF.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}

// fastAuthority checks host[:port] with a plain host name or IPv4 address.
func fastAuthority(a []byte) bool {
	host, port, hasPort := bytes.Cut(a, []byte(":"))
	if len(host) == 0 || (hasPort && !fastPort(port)) {
		return false
	}
	for _, c := range host {
		if !hostChar[c] {
			return false
		}
	}
	return true
}

func fastPort(p []byte) bool {
	if len(p) == 0 || len(p) > 5 {
		return false
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// fastTarget checks an origin-form target: a path of pathChar and %XX escapes,
// then an optional query of visible ASCII.
func fastTarget(t []byte) bool {
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	path, query, _ := bytes.Cut(t, []byte("?"))
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '%' {
			if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
				return false
			}
			i += 2
			continue
		}
		if !pathChar[c] {
			return false
		}
	}
	for _, c := range query {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// fastValue trims a field value and checks it holds only visible ASCII, SP and HTAB.
// (The trim is by hand: bytes.Trim builds a set from its cutset on every call, which
// was 1.5% of the proxy's CPU.)
func fastValue(v []byte) ([]byte, bool) {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	for _, c := range v {
		if (c < ' ' && c != '\t') || c >= 0x7f {
			return nil, false
		}
	}
	return v, true
}

// fastLength parses a Content-Length value: digits only, at most 15 of them.
func fastLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// fastConnection reads a Connection field: "close" or "keep-alive" only (a field
// naming other fields to drop is left to the other path).
func fastConnection(v []byte) (close, ok bool) {
	switch {
	case bytes.EqualFold(v, []byte("close")):
		return true, true
	case bytes.EqualFold(v, []byte("keep-alive")):
		return false, true
	}
	return false, false
}

// fieldKind sorts the field names the fast path treats specially.
type fieldKind int

const (
	fieldOther fieldKind = iota
	fieldHost
	fieldContentLength
	fieldConnection
	fieldDrop    // hop-by-hop, never passed on (RFC 9110 §7.6.1), or Proxy-Authorization
	fieldDecline // the fast path does not handle it
	fieldAuthorization
	fieldDate
	fieldContentType
)

// fieldKinds are the names kindOf knows, lowercase; every other field is fieldOther.
var fieldKinds = [...]struct {
	name string
	kind fieldKind
}{
	{"host", fieldHost},
	{"content-length", fieldContentLength},
	{"connection", fieldConnection},
	{"keep-alive", fieldDrop},
	{"proxy-connection", fieldDrop},
	{"proxy-authenticate", fieldDrop},
	{"proxy-authorization", fieldDrop},
	{"te", fieldDecline},
	{"expect", fieldDecline},
	{"upgrade", fieldDecline},
	{"trailer", fieldDecline},
	{"transfer-encoding", fieldDecline},
	{"authorization", fieldAuthorization},
	{"date", fieldDate},
	{"content-type", fieldContentType},
	// A browser's page: the policy's cross-site check reads these (net/http's path).
	{"origin", fieldDecline},
	{"sec-fetch-site", fieldDecline},
}

func kindOf(name []byte) fieldKind {
	for _, k := range fieldKinds {
		if len(name) == len(k.name) && bytes.EqualFold(name, []byte(k.name)) {
			return k.kind
		}
	}
	if len(name) >= 6 && bytes.EqualFold(name[:6], []byte("http2-")) {
		return fieldDecline // HTTP2-Settings, with an Upgrade the fast path never takes
	}
	return fieldOther
}

// nextField reads the field line at the start of b; done at the blank line that ends
// the head.
func nextField(b []byte) (name, value, rest []byte, done, ok bool) {
	line, rest, ok := cutLine(b)
	if !ok {
		return nil, nil, nil, false, false
	}
	if len(line) == 0 {
		return nil, nil, rest, true, true
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 1 {
		return nil, nil, nil, false, false // also a folded line, which starts with SP or HTAB
	}
	name = line[:colon]
	for _, c := range name {
		if !tchar[c] {
			return nil, nil, nil, false, false
		}
	}
	value, ok = fastValue(line[colon+1:])
	return name, value, rest, false, ok
}

// parseFastRequest reads head (a whole request head, blank line included) into fr;
// false when the fast path does not take it.
func parseFastRequest(head []byte, inTunnel bool, fr *fastReq) bool {
	*fr = fastReq{headFields: headFields{fields: fr.fields[:0]}}
	line, rest, ok := cutLine(head)
	if !ok {
		return false
	}
	method, line, ok := bytes.Cut(line, []byte(" "))
	if fr.method = fastMethod(method); !ok || fr.method == "" {
		return false
	}
	target, proto, ok := bytes.Cut(line, []byte(" "))
	if !ok || string(proto) != "HTTP/1.1" {
		return false
	}
	if inTunnel {
		fr.uri = target
	} else {
		t, ok := bytes.CutPrefix(target, []byte("http://"))
		if !ok {
			return false
		}
		end := bytes.IndexByte(t, '/')
		if end < 0 {
			return false // no path ("http://host", "http://host?q"): net/http adds one
		}
		fr.authority, fr.uri = t[:end], t[end:]
		if !fastAuthority(fr.authority) {
			return false
		}
	}
	if !fastTarget(fr.uri) {
		return false
	}
	hosts := 0
	ok = fr.read(rest, false, func(kind fieldKind, value []byte) (bool, bool) {
		if kind != fieldHost {
			return true, true
		}
		hosts++
		fr.host = value
		return false, hosts == 1 && fastAuthority(value)
	})
	fr.length = max(fr.length, 0)
	return ok && hosts == 1
}

// parseFastResponse reads an upstream's response head into fr; false when the fast
// path does not take it (net/http's http.ReadResponse reads it then).
func parseFastResponse(head []byte, method string, fr *fastResp) bool {
	*fr = fastResp{headFields: headFields{fields: fr.fields[:0]}}
	line, rest, ok := cutLine(head)
	if !ok || len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
		return false
	}
	code, ok := fastLength(line[9:12])
	if !ok || code < 200 || code > 599 {
		return false // 1xx, 101 and nonsense go to net/http
	}
	if _, ok := fastValue(line[12:]); !ok {
		return false
	}
	fr.statusLine, fr.status = line, int(code)
	ok = fr.read(rest, true, func(kind fieldKind, value []byte) (bool, bool) {
		switch kind {
		case fieldDate:
			fr.date = true
		case fieldContentType:
			if len(value) >= 17 && bytes.EqualFold(value[:17], []byte("text/event-stream")) {
				return false, false // a stream: the other path flushes every write
			}
		}
		return true, true
	})
	if !ok {
		return false
	}
	// Without a body by rule (RFC 9112 §6.3), or framed by Content-Length; a
	// close-delimited body goes to net/http.
	return fr.bodyless(method) || fr.length >= 0
}

// bodyless reports whether the response carries no body whatever its fields say.
func (fr *fastResp) bodyless(method string) bool {
	return method == http.MethodHead || fr.status == http.StatusNoContent || fr.status == http.StatusNotModified
}

// writeFields writes fields as they were read.
func writeFastFields(bw *bufio.Writer, fields []fastField, skipAuth bool) {
	for _, f := range fields {
		if skipAuth && f.auth {
			continue
		}
		bw.Write(f.name)
		bw.WriteString(": ")
		bw.Write(f.value)
		bw.WriteString("\r\n")
	}
}

// writeHead writes the request upstream: origin-form, the Host it addresses, the
// client's fields but the hop-by-hop ones, the token if one is given, and the body.
func (fr *fastReq) writeHead(bw *bufio.Writer, tok *Token, body []byte) {
	bw.WriteString(fr.method)
	bw.WriteByte(' ')
	bw.Write(fr.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	if fr.authority != nil {
		bw.Write(fr.authority) // as net/http: an absolute-form target's authority wins (RFC 9112 §3.2.2)
	} else {
		bw.Write(fr.host)
	}
	bw.WriteString("\r\n")
	writeFastFields(bw, fr.fields, tok != nil && tok.Header == "Authorization")
	if tok != nil {
		bw.WriteString(tok.Header)
		bw.WriteString(": Bearer ")
		bw.WriteString(tok.Value)
		bw.WriteString("\r\n")
	}
	switch {
	case len(body) > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.Itoa(len(body)))
		bw.WriteString("\r\n")
	case fr.method == http.MethodPost || fr.method == http.MethodPut || fr.method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(body)
}

// logPath is the path part of the target, as the other path logs it (unescaped).
func (fr *fastReq) logPath() string {
	p, _, _ := bytes.Cut(fr.uri, []byte("?"))
	if bytes.IndexByte(p, '%') >= 0 {
		if u, err := url.PathUnescape(string(p)); err == nil {
			return u
		}
	}
	return string(p)
}

// serveFast serves the request whose head (n bytes, copied in tc.head) starts the
// buffer, if the fast path takes it. When served is false nothing has been read or
// written, and the loop goes on as before; keep says whether the connection serves
// another request.
func (tc *loopConn) serveFast(n int) (served, keep bool) {
	s := tc.s
	fr := &tc.fr
	if !parseFastRequest(tc.head, tc.inTunnel, fr) {
		return false, false
	}
	var body []byte
	if fr.length > 0 {
		if fr.length > fastMaxBody || int64(tc.br.Buffered()-n) < fr.length {
			return false, false // a larger or streaming upload: the other path streams it
		}
		b, _ := tc.br.Peek(n + int(fr.length))
		// A copy: the buffer moves when the loop reads on (the hang-up watch).
		tc.body = append(tc.body[:0], b[n:]...)
		body = tc.body
	}
	scheme := "http"
	if tc.inTunnel {
		scheme = "https"
	}
	d, addr := tc.decideFast()
	if d.Action != Forward && d.Action != Inject {
		return false, false // refusals and the status page
	}
	if !s.h1Carries(scheme, d.Host, addr) {
		return false, false // HTTP/2 and proxied upstreams
	}
	start := time.Now()
	tc.br.Discard(n + len(body))
	// Nothing reads the client while the pool, the broker and the upstream work on
	// its request: past watchAfter, watch it for a hang-up, which cancels them.
	wt := tc.watch()
	c, err := s.h1.get(tc.ctx, scheme, addr, false)
	if errors.Is(err, errUseTransport) {
		// This first dial found an upstream that speaks HTTP/2: the loop's other
		// path (http.Transport) carries the request, read again from the copies.
		if !wt.stop() {
			return true, false
		}
		return true, tc.serveCopy(body)
	}

	s.fastServed.Add(1)
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	e := RequestLog{Time: start, Method: fr.method, Host: addr, Path: fr.logPath(), Profile: d.Profile}
	w := &tc.w
	w.reset(tc.bw, fr.method, fr.close, s.closing.Load())
	defer func() {
		if p := recover(); p != nil {
			// A broken answer (copyResponse aborts with http.ErrAbortHandler) or a
			// bug: the request was taken, and the connection closes.
			served, keep = true, false
			if tc.cw.t != nil {
				tc.cw.stop()
			}
			if p != http.ErrAbortHandler {
				s.log.Error("panic serving a request", "host", addr, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
			if e.Err == "" { // relaySlow's copy may have said which side it was
				e.Err = "aborted mid-body: client or upstream went away"
			}
		}
		e.Duration = time.Since(start)
		s.logRequest(e)
	}()
	ok := true
	var tok Token
	if d.Action == Inject {
		// The token before the upstream's failure, as on the other path: a profile
		// that must sign in again gets its 401 even when the upstream is down.
		var ref *Decision
		if tok, ref = s.token(tc.ctx, d); ref != nil {
			if err == nil {
				s.h1.put(c)
			}
			writeRefusal(w, *ref)
			e.Status, e.Err = ref.Status, ref.Code
			err = errRefused
		}
	}
	switch {
	case errors.Is(err, errRefused):
	case err != nil:
		ok = tc.upstreamFailed(w, &e, d, err)
	default:
		var t *Token
		if d.Action == Inject {
			e.Injected, t = true, &tok
		}
		ok = tc.relay(w, &e, d, c, scheme, addr, t, body)
	}
	if !wt.stop() {
		ok = false
		e.Status, e.Err = 499, errClientGone
	}
	if ok && !w.fastDone {
		ok = w.finish() == nil
	}
	if err := tc.bw.Flush(); err != nil {
		ok = false
	}
	return true, ok && !w.closeAfter && tc.ctx.Err() == nil
}

// fastDecision is the policy's decision for the last request the fast path read on
// a connection, with what it was made from. A keep-alive client sends the same target
// again and again, and Decide, a pure function of the request and the allow-list
// (which is fixed for a Server's life, see TokenSource), would decide the same again:
// normalising the host, looking it up and allocating its strings each time.
type fastDecision struct {
	valid           bool
	method          string
	authority, host []byte // copies of the request's
	d               Decision
	addr            string // d.Addr()
}

// decideFast is Decide for the fast path's request (tc.fr), and its address.
func (tc *loopConn) decideFast() (Decision, string) {
	fr, m := &tc.fr, &tc.decided
	if m.valid && m.method == fr.method && bytes.Equal(m.authority, fr.authority) && bytes.Equal(m.host, fr.host) {
		return m.d, m.addr
	}
	info := RequestInfo{Method: fr.method, HostHeader: string(fr.host), ProxyPort: tc.s.port()}
	if tc.inTunnel {
		info.Scheme, info.Tunnel = "https", tc.tunnelAddr
	} else {
		info.Scheme, info.Target = "http", string(fr.authority)
	}
	d := Decide(info, tc.s.tokens.Gateway)
	*m = fastDecision{valid: true, method: fr.method, d: d, addr: d.Addr(),
		authority: append(m.authority[:0], fr.authority...), host: append(m.host[:0], fr.host...)}
	return m.d, m.addr
}

// serveCopy serves, on the loop's other path, the request whose head (tc.head) and
// body the fast path took but cannot carry.
func (tc *loopConn) serveCopy(body []byte) bool {
	req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(bytes.NewReader(tc.head), bytes.NewReader(body))))
	if err != nil || !loopable(req, tc.inTunnel, tc.head) {
		return false // never happens: FuzzFastHead checks that net/http reads what the fast path takes
	}
	return tc.serve(req)
}

// upstreamFailed answers for an exchange that failed before the upstream's answer:
// 502 (504 on a timeout) with the reason, or nothing if the client left.
func (tc *loopConn) upstreamFailed(w *loopWriter, e *RequestLog, d Decision, err error) bool {
	if tc.ctx.Err() != nil {
		e.Status, e.Err = 499, errClientGone
		return false
	}
	ref := upstreamError(d, err)
	e.Status, e.Err = ref.Status, ref.Reason
	writeRefusal(w, ref)
	return true
}

// relay runs the exchange: the upstream's answer is copied field by field when the
// fast path takes its head, else read with net/http and copied as on the other path.
// It returns false when the client connection must close (a broken exchange, or the
// client left). tok, if set, goes in the request.
func (tc *loopConn) relay(w *loopWriter, e *RequestLog, d Decision, c *h1Conn, scheme, addr string, tok *Token, body []byte) bool {
	fr := &tc.fr
	// The request and its writeRaw are the connection's, reused: the pool holds
	// neither past send.
	req := &tc.req
	*req = h1Request{
		Method: fr.method, Scheme: scheme, Addr: addr, rawBody: body != nil, track: tc.trackFn,
		writeRaw: tc.writeRawFn,
	}
	tc.rawTok, tc.rawBody = tok, body
	x, err := tc.s.h1.send(tc.ctx, c, req)
	tc.rawTok, tc.rawBody = nil, nil
	if err != nil {
		return tc.upstreamFailed(w, e, d, err)
	}
	defer x.Close()
	method := req.Method
	rh := &tc.fresp
	hn, err := headLen(x.c.br, func(time.Time, time.Duration) {})
	if err == nil {
		head, _ := x.c.br.Peek(hn)
		if !parseFastResponse(head, method, rh) {
			err = errNotFast
		}
	}
	if err != nil {
		return tc.relaySlow(w, e, d, x, method)
	}
	e.Status = rh.status
	x.closeAfter = rh.close // the upstream's connection only: the client's stays as it asked
	bw := tc.bw
	bw.Write(rh.statusLine)
	bw.WriteString("\r\n")
	writeFastFields(bw, rh.fields, false)
	if !rh.date {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	w.fastDone = true
	x.c.br.Discard(hn)
	if !rh.bodyless(method) && rh.length > 0 {
		if _, err := io.CopyN(bw, x.c.br, rh.length); err != nil {
			x.broken = true
			if tc.ctx.Err() != nil || clientWriteFailed(err) {
				e.Err = errClientGone + " mid-body"
			} else {
				e.Err = "upstream body: " + err.Error()
			}
			return false // the client cannot take a truncated body for a whole one
		}
	}
	x.eof = true
	return true
}

// writeRaw writes the fast path's request upstream (h1Request.writeRaw).
func (tc *loopConn) writeRaw(bw *bufio.Writer) { tc.fr.writeHead(bw, tc.rawTok, tc.rawBody) }

// relaySlow reads the upstream's answer with net/http's parser and copies it as the
// other path does (copyResponse).
func (tc *loopConn) relaySlow(w *loopWriter, e *RequestLog, d Decision, x *h1Exchange, method string) bool {
	tc.s.fastSlowAnswers.Add(1)
	if err := x.readResponse(tc.ctx, method, pass1xx(w)); err != nil {
		return tc.upstreamFailed(w, e, d, err)
	}
	r := (&http.Request{Method: method, URL: &url.URL{}, Header: http.Header{}}).WithContext(tc.ctx)
	st := &reqState{d: d}
	defer func() { e.Status, e.Err = st.status, st.err }()
	tc.s.copyResponse(w, r, st, x.Response) // panics with http.ErrAbortHandler on a broken body
	return true
}

// h1Carries says whether h1Pool may carry a request to host (at addr, host:port)
// over scheme: not through a corporate proxy (loopback hosts never use it), and not
// to an upstream known to speak HTTP/2.
func (s *Server) h1Carries(scheme, host, addr string) bool {
	if s.h1 == nil {
		return false
	}
	if s.opts.UpstreamProxy != nil && !isLoopbackHost(host) {
		return false
	}
	return !s.h1.prefersTransport(scheme, addr)
}

// dateCache holds the Date field value for the current second.
var dateCache atomic.Pointer[cachedDate]

type cachedDate struct {
	sec int64
	s   string
}

// httpDate is the current time as an HTTP Date field value (RFC 9110 §5.6.7),
// formatted once a second.
func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &cachedDate{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

var (
	// errNotFast says the fast path does not take a response head.
	errNotFast = errors.New("not a fast-path head")
	// errRefused says the request was answered without going upstream.
	errRefused = errors.New("refused")
)
