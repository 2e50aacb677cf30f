package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawUpstream is a hand-written HTTP/1.1 server on loopback: it parses each request
// with http.ReadRequest, records it, and writes whatever raw bytes answer returns.
// After answering, it closes the connection if answer says so.
type rawUpstream struct {
	ln      net.Listener
	accepts atomic.Int32
	mu      sync.Mutex
	reqs    []rawRecorded
	// answer returns the raw response for the n-th request on a connection and
	// whether to close the connection after writing it.
	answer func(r *http.Request, n int) (resp string, closeAfter bool)
	// late, if set, returns bytes to write a moment after the answer to the n-th
	// request: stray bytes that arrive after the proxy has read that answer.
	late func(r *http.Request, n int) string
}

type rawRecorded struct {
	Method, URI string
	Header      http.Header
	Body        string
	Trailer     http.Header
	TE          []string // Transfer-Encoding as parsed
	Close       bool     // "Connection: close" sent by the proxy
}

func newRawUpstream(t testing.TB, answer func(r *http.Request, n int) (string, bool)) *rawUpstream {
	t.Helper()
	return newRawUpstreamLate(t, answer, nil)
}

// newRawUpstreamLate is newRawUpstream with the late bytes of rawUpstream.late.
func newRawUpstreamLate(t testing.TB, answer func(r *http.Request, n int) (string, bool), late func(r *http.Request, n int) string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, answer: answer, late: late}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accepts.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				u.serve(c)
			}()
		}
	}()
	return u
}

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, rawRecorded{Method: r.Method, URI: r.RequestURI, Header: r.Header, Body: string(body), Trailer: r.Trailer, TE: r.TransferEncoding, Close: r.Close})
		u.mu.Unlock()
		resp, closeAfter := u.answer(r, n)
		if _, err := io.WriteString(c, resp); err != nil || closeAfter {
			return
		}
		if u.late != nil {
			if stray := u.late(r, n); stray != "" {
				time.Sleep(30 * time.Millisecond)
				io.WriteString(c, stray)
			}
		}
	}
}

func (u *rawUpstream) addr() string { return u.ln.Addr().String() }

func (u *rawUpstream) requests() []rawRecorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]rawRecorded(nil), u.reqs...)
}

func fixed(resp string) func(*http.Request, int) (string, bool) {
	return func(*http.Request, int) (string, bool) { return resp, false }
}

func getReq(addr, uri string) *h1Request {
	return &h1Request{Method: http.MethodGet, Scheme: "http", Addr: addr, RequestURI: uri, Host: addr, Header: http.Header{"X-Test": {"1"}}}
}

// readAll reads an exchange's body and closes it.
func readAll(t *testing.T, x *h1Exchange) string {
	t.Helper()
	b, err := io.ReadAll(x.Response.Body)
	x.Response.Body.Close()
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return string(b)
}

func TestH1ResponseFraming(t *testing.T) {
	tests := map[string]struct {
		method    string
		resp      string
		wantCode  int
		wantBody  string
		wantTrail string // value of trailer X-Sum
		wantReuse bool
	}{
		"content-length": {
			resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", wantCode: 200, wantBody: "hello", wantReuse: true,
		},
		"chunked with trailer": {
			resp:     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 42\r\n\r\n",
			wantCode: 200, wantBody: "abcde", wantTrail: "42", wantReuse: true,
		},
		"close-delimited": {
			resp: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", wantCode: 200, wantBody: "until the end", wantReuse: false,
		},
		"HTTP/1.0 without keep-alive": {
			resp: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", wantCode: 200, wantBody: "ok", wantReuse: false,
		},
		"HEAD has no body despite Content-Length": {
			method: http.MethodHead, resp: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", wantCode: 200, wantReuse: true,
		},
		"204 has no body": {
			resp: "HTTP/1.1 204 No Content\r\n\r\n", wantCode: 204, wantReuse: true,
		},
		"304 has no body": {
			resp: "HTTP/1.1 304 Not Modified\r\nContent-Length: 77\r\n\r\n", wantCode: 304, wantReuse: true,
		},
		"1xx before the final answer": {
			resp: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", wantCode: 200, wantBody: "ok", wantReuse: true,
		},
		"bytes beyond the response": {
			resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE", wantCode: 200, wantBody: "ok", wantReuse: false,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			up := newRawUpstream(t, func(r *http.Request, n int) (string, bool) {
				return tc.resp, strings.Contains(tc.resp, "Connection: close")
			})
			p := newH1Pool(nil)
			defer p.closeIdle(true)
			req := getReq(up.addr(), "/f")
			if tc.method != "" {
				req.Method = tc.method
			}
			var got1xx []int
			req.On1xx = func(code int, h http.Header) { got1xx = append(got1xx, code) }
			x, err := p.roundTrip(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if x.Response.StatusCode != tc.wantCode {
				t.Errorf("status %d, want %d", x.Response.StatusCode, tc.wantCode)
			}
			if body := readAll(t, x); body != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
			if got := x.Response.Trailer.Get("X-Sum"); got != tc.wantTrail {
				t.Errorf("trailer X-Sum = %q, want %q", got, tc.wantTrail)
			}
			if strings.Contains(tc.resp, " 103 ") && (len(got1xx) != 1 || got1xx[0] != 103) {
				t.Errorf("interim responses seen: %v, want [103]", got1xx)
			}
			if idle := p.idleCount("http", up.addr()); (idle == 1) != tc.wantReuse {
				t.Errorf("idle connections after the exchange: %d, want reuse=%v", idle, tc.wantReuse)
			}
		})
	}
}

func TestH1PoolReuse(t *testing.T) {
	up := newRawUpstream(t, fixed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	p := newH1Pool(nil)
	defer p.closeIdle(true)
	for i := range 10 {
		x, err := p.roundTrip(context.Background(), getReq(up.addr(), fmt.Sprintf("/r%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, x); b != "ok" {
			t.Fatalf("body %q", b)
		}
	}
	if n := up.accepts.Load(); n != 1 {
		t.Errorf("10 sequential requests used %d connections, want 1", n)
	}
	reqs := up.requests()
	if len(reqs) != 10 || reqs[9].URI != "/r9" || reqs[9].Header.Get("X-Test") != "1" || reqs[9].Close {
		t.Errorf("upstream saw %+v", reqs[len(reqs)-1])
	}
}

func TestH1PoolBodyNotReadIsNotReused(t *testing.T) {
	up := newRawUpstream(t, fixed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"))
	p := newH1Pool(nil)
	defer p.closeIdle(true)
	x, err := p.roundTrip(context.Background(), getReq(up.addr(), "/"))
	if err != nil {
		t.Fatal(err)
	}
	x.Response.Body.Read(make([]byte, 3))
	x.Response.Body.Close()
	if n := p.idleCount("http", up.addr()); n != 0 {
		t.Errorf("a connection with an unread body went back to the pool")
	}
}

func TestH1PoolEviction(t *testing.T) {
	up := newRawUpstream(t, fixed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	t.Run("idle timeout", func(t *testing.T) {
		p := newH1Pool(nil)
		defer p.closeIdle(true)
		p.idleTimeout = 30 * time.Millisecond
		before := up.accepts.Load()
		x, err := p.roundTrip(context.Background(), getReq(up.addr(), "/"))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, x)
		waitFor(t, func() bool { return p.idleCount("http", up.addr()) == 0 }, "the sweeper closes the idle connection")
		x, err = p.roundTrip(context.Background(), getReq(up.addr(), "/"))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, x)
		if n := up.accepts.Load() - before; n != 2 {
			t.Errorf("%d connections, want 2 (the first one expired)", n)
		}
	})
	t.Run("at most maxIdle per upstream", func(t *testing.T) {
		p := newH1Pool(nil)
		defer p.closeIdle(true)
		p.maxIdle = 2
		var xs []*h1Exchange
		for range 4 { // four at once: four connections
			x, err := p.roundTrip(context.Background(), getReq(up.addr(), "/"))
			if err != nil {
				t.Fatal(err)
			}
			xs = append(xs, x)
		}
		for _, x := range xs {
			readAll(t, x)
		}
		if n := p.idleCount("http", up.addr()); n != 2 {
			t.Errorf("%d idle connections, want maxIdle=2", n)
		}
		p.closeIdle(true)
		if n := p.idleCount("http", up.addr()); n != 0 {
			t.Errorf("%d idle connections after closeIdle", n)
		}
	})
}

func TestH1StaleConnection(t *testing.T) {
	// The upstream closes every connection after one response without saying so: the
	// pooled connection is stale by the next request.
	up := newRawUpstream(t, func(*http.Request, int) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	p := newH1Pool(nil)
	defer p.closeIdle(true)
	roundTrip := func(req *h1Request) (string, error) {
		x, err := p.roundTrip(context.Background(), req)
		if err != nil {
			return "", err
		}
		return readAll(t, x), nil
	}
	if _, err := roundTrip(getReq(up.addr(), "/1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(up.requests()) == 1 }, "first request served")
	time.Sleep(20 * time.Millisecond) // let the FIN arrive

	t.Run("idempotent request is retried once on a new connection", func(t *testing.T) {
		if b, err := roundTrip(getReq(up.addr(), "/2")); err != nil || b != "ok" {
			t.Fatalf("GET on a stale connection: %q %v", b, err)
		}
	})
	t.Run("request with a body never reuses a closed connection", func(t *testing.T) {
		time.Sleep(20 * time.Millisecond)
		if p.idleCount("http", up.addr()) != 1 {
			t.Fatal("expected a (stale) idle connection in the pool")
		}
		req := getReq(up.addr(), "/post")
		req.Method, req.Body, req.ContentLength = http.MethodPost, io.NopCloser(strings.NewReader("payload")), 7
		if b, err := roundTrip(req); err != nil || b != "ok" {
			t.Fatalf("POST after a stale connection: %q %v", b, err)
		}
		reqs := up.requests()
		if last := reqs[len(reqs)-1]; last.Method != "POST" || last.Body != "payload" {
			t.Errorf("upstream got %+v", last)
		}
	})
	t.Run("a failure on a fresh connection is not retried", func(t *testing.T) {
		dead := newRawUpstream(t, func(*http.Request, int) (string, bool) { return "", true })
		before := dead.accepts.Load()
		if _, err := roundTrip(getReq(dead.addr(), "/x")); err == nil {
			t.Fatal("no error from an upstream that hangs up")
		}
		if n := dead.accepts.Load() - before; n != 1 {
			t.Errorf("%d connections for one failed request on a fresh connection, want 1", n)
		}
	})
}

func TestH1RequestFraming(t *testing.T) {
	up := newRawUpstream(t, fixed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	p := newH1Pool(nil)
	defer p.closeIdle(true)
	tests := map[string]struct {
		req         func() *h1Request
		wantBody    string
		wantTE      []string
		wantCL      string
		wantTrailer string
	}{
		"content-length body": {
			req: func() *h1Request {
				r := getReq(up.addr(), "/cl")
				r.Method, r.Body, r.ContentLength = "PUT", io.NopCloser(strings.NewReader("0123456789")), 10
				return r
			},
			wantBody: "0123456789", wantCL: "10",
		},
		"unknown length is sent chunked, with trailers": {
			req: func() *h1Request {
				r := getReq(up.addr(), "/chunked")
				r.Method, r.ContentLength = "POST", -1
				r.Trailer = http.Header{"X-Checksum": nil}
				pr, pw := io.Pipe()
				go func() {
					for _, part := range []string{"abc", "defg", "h"} {
						pw.Write([]byte(part))
					}
					r.Trailer.Set("X-Checksum", "c0ffee")
					pw.Close()
				}()
				r.Body = pr
				return r
			},
			wantBody: "abcdefgh", wantTE: []string{"chunked"}, wantTrailer: "c0ffee",
		},
		"body-less POST says Content-Length: 0": {
			req: func() *h1Request {
				r := getReq(up.addr(), "/empty")
				r.Method = "POST"
				return r
			},
			wantCL: "0",
		},
		"hop-by-hop framing from the caller is never copied": {
			req: func() *h1Request {
				r := getReq(up.addr(), "/framing")
				r.Header.Set("Content-Length", "99")
				r.Header.Set("Transfer-Encoding", "chunked")
				return r
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			x, err := p.roundTrip(context.Background(), tc.req())
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, x)
			reqs := up.requests()
			got := reqs[len(reqs)-1]
			if got.Body != tc.wantBody {
				t.Errorf("upstream body %q, want %q", got.Body, tc.wantBody)
			}
			if te := got.TE; fmt.Sprint(te) != fmt.Sprint(tc.wantTE) {
				t.Errorf("Transfer-Encoding %v, want %v", te, tc.wantTE)
			}
			if cl := got.Header.Get("Content-Length"); cl != tc.wantCL {
				t.Errorf("Content-Length %q, want %q", cl, tc.wantCL)
			}
			if tr := got.Trailer.Get("X-Checksum"); tr != tc.wantTrailer {
				t.Errorf("trailer %q, want %q", tr, tc.wantTrailer)
			}
		})
	}
	if n := up.accepts.Load(); n != 1 {
		t.Errorf("%d connections for sequential requests with bodies, want 1", n)
	}
}

func TestH1ClientGoneUnblocksExchange(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	up := newRawUpstream(t, func(*http.Request, int) (string, bool) {
		<-hold // never answers while the test runs
		return "", true
	})
	p := newH1Pool(nil)
	defer p.closeIdle(true)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := p.roundTrip(ctx, getReq(up.addr(), "/hang"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v to give up", d)
	}
	if n := p.idleCount("http", up.addr()); n != 0 {
		t.Errorf("an abandoned connection went back to the pool")
	}
}

func TestH1UnexpectedSwitchingProtocols(t *testing.T) {
	up := newRawUpstream(t, fixed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"))
	p := newH1Pool(nil)
	defer p.closeIdle(true)
	if _, err := p.roundTrip(context.Background(), getReq(up.addr(), "/")); err == nil || !strings.Contains(err.Error(), "switched protocols") {
		t.Errorf("err = %v", err)
	}
}

// Through the whole proxy: plain gateway on a raw upstream, checking what the client
// gets and what went upstream.
func TestHotPathThroughProxy(t *testing.T) {
	e := newEnv(t)
	up := newRawUpstream(t, func(r *http.Request, n int) (string, bool) {
		switch r.URL.Path {
		case "/hints":
			return "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
		case "/chunked":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nab\r\n0\r\nX-Sum: 7\r\n\r\n", false
		}
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\n\r\n%s", len(r.URL.Path), r.URL.Path), false
	})
	_, port, _ := net.SplitHostPort(up.addr())
	e.src.add("127.0.0.1:"+port, Gateway{Profile: "work", PlainHTTP: true})
	base := "http://127.0.0.1:" + port
	c := e.client()

	for i := range 5 {
		resp, body := get(t, c, fmt.Sprintf("%s/k%d", base, i), "Proxy-Authorization", "Basic x", "Connection", "X-Drop", "X-Drop", "1")
		if resp.StatusCode != 200 || body != fmt.Sprintf("/k%d", i) {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if resp.Header.Get("Keep-Alive") != "" {
			t.Errorf("hop-by-hop Keep-Alive passed back to the client")
		}
	}
	if n := up.accepts.Load(); n != 1 {
		t.Errorf("5 requests used %d upstream connections, want 1", n)
	}
	last := up.requests()[len(up.requests())-1]
	if last.Header.Get("Authorization") != "Bearer "+e.src.current() || last.Header.Get("Proxy-Authorization") != "" || last.Header.Get("X-Drop") != "" || last.URI != "/k4" {
		t.Errorf("upstream got %+v", last)
	}

	t.Run("1xx is passed to the client", func(t *testing.T) {
		var codes []int
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { codes = append(codes, code); return nil },
		})
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/hints", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" || fmt.Sprint(codes) != "[103]" {
			t.Errorf("got %d %q, interim %v", resp.StatusCode, b, codes)
		}
	})
	t.Run("chunked response with trailer", func(t *testing.T) {
		resp, err := c.Get(base + "/chunked")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ab" || resp.Trailer.Get("X-Sum") != "7" {
			t.Errorf("body %q trailer %v", b, resp.Trailer)
		}
	})
	t.Run("chunked request body with trailer", func(t *testing.T) {
		out := rawRequest(t, e.srv.Addr(), "POST "+base+"/up HTTP/1.1\r\nHost: 127.0.0.1:"+port+"\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sig\r\nConnection: close\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Sig: s1\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 200") {
			t.Fatalf("got %q", out)
		}
		got := up.requests()[len(up.requests())-1]
		if got.Body != "wikipedia" || got.Trailer.Get("X-Sig") != "s1" || got.Header.Get("Authorization") == "" {
			t.Errorf("upstream got %+v", got)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		resp, err := c.Head(base + "/head")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != int64(len("/head")) {
			t.Errorf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
		}
	})
	if n := up.accepts.Load(); n != 1 {
		t.Errorf("after all subtests: %d upstream connections, want 1", n)
	}
}

// An intercepted TLS gateway that speaks only HTTP/1.1 is served by the pool over
// verified TLS, keeping its connection alive.
func TestInterceptedHTTP1UpstreamUsesPool(t *testing.T) {
	e := newEnv(t)
	var conns atomic.Int32
	h1 := &upstream{name: "tls-h1"}
	h1.Server = httptest.NewUnstartedServer(http.HandlerFunc(h1.serve))
	h1.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	h1.TLS = &tls.Config{Certificates: []tls.Certificate{e.pki.cert}}
	h1.StartTLS() // HTTP/1.1 only: no h2 offered
	t.Cleanup(h1.Close)
	e.src.add("localhost:"+h1.port(), Gateway{Profile: "work"})
	c := e.client()
	for i := range 5 {
		resp, body := get(t, c, fmt.Sprintf("https://localhost:%s/n%d", h1.port(), i))
		if resp.StatusCode != 200 || body != "hello from tls-h1" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	r := last(t, h1)
	if r.Proto != "HTTP/1.1" || r.Header.Get("Authorization") != "Bearer "+e.src.current() {
		t.Errorf("upstream got %s", r)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 intercepted requests used %d upstream connections, want 1", n)
	}
	if n := e.srv.h1.idleCount("https", "localhost:"+h1.port()); n != 1 {
		t.Errorf("pool holds %d idle TLS connections, want 1", n)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("client upload broke")
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

func TestH1BrokenUploadEndsExchange(t *testing.T) {
	// The upstream waits for all 1000 bytes it was promised; the client's body breaks
	// after 10. The exchange must end with an error, not wait for an answer forever.
	up := newRawUpstream(t, fixed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	p := newH1Pool(nil)
	defer p.closeIdle(true)
	req := getReq(up.addr(), "/upload")
	req.Method, req.Body, req.ContentLength = http.MethodPost, io.NopCloser(&failingReader{n: 10}), 1000
	start := time.Now()
	if _, err := p.roundTrip(context.Background(), req); err == nil {
		t.Fatal("no error for a broken upload")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
	if n := p.idleCount("http", up.addr()); n != 0 {
		t.Errorf("the connection of a broken upload went back to the pool")
	}
}
