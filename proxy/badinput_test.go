package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	gw := "localhost:" + e.tlsGW.port()
	tests := map[string]struct {
		req        string
		wantStatus string
		wantBody   string
	}{
		"garbage request line":             {req: "GARBAGE\r\n\r\n", wantStatus: "400", wantBody: `"error":"bad_request","reason":"the request could not be read: malformed HTTP request`},
		"request line without proto":       {req: "GET http://example.com/\r\n\r\n", wantStatus: "400", wantBody: "X-Gatepass-Error: bad_request"},
		"absolute URI unclosed IPv6":       {req: "GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "400", wantBody: "X-Gatepass-Error: bad_request"},
		"absolute URI with space":          {req: "GET http://a b/ HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "400", wantBody: "X-Gatepass-Error: bad_request"},
		"absolute URI bad port name":       {req: "GET http://localhost:abc/ HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "400", wantBody: "X-Gatepass-Error: bad_request"},
		"unknown transfer coding":          {req: "POST http://example.com/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", wantStatus: "501", wantBody: "X-Gatepass-Error: bad_request"},
		"absolute URI without host":        {req: "GET http:///path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wantStatus: "400", wantBody: "has no host"},
		"absolute URI with one slash":      {req: "GET http:/localhost/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wantStatus: "400", wantBody: "has no host"},
		"absolute URI without slashes":     {req: "GET http:localhost/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wantStatus: "400", wantBody: "has no host"},
		"absolute URI bad port":            {req: "GET http://example.com:99999/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wantStatus: "400", wantBody: "bad_request"},
		"absolute URI ftp":                 {req: "GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wantStatus: "400", wantBody: "unsupported URI scheme"},
		"absolute URI userinfo":            {req: "GET http://" + gw + "@example.com/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wantStatus: "400", wantBody: "user information"},
		"CONNECT without port":             {req: "CONNECT " + strings.Split(gw, ":")[0] + " HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "400", wantBody: "missing port"},
		"CONNECT port zero":                {req: "CONNECT localhost:0 HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "400", wantBody: "out of range"},
		"CONNECT port out of range":        {req: "CONNECT localhost:70000 HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "400", wantBody: "out of range"},
		"CONNECT port not a number":        {req: "CONNECT localhost:https HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "400"}, // net/http refuses it before the policy
		"CONNECT userinfo":                 {req: "CONNECT " + gw + "@example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "400"},
		"CONNECT to the proxy itself":      {req: "CONNECT %SELF% HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "508", wantBody: "loop_detected"},
		"CONNECT target with a path":       {req: "CONNECT " + gw + "/x HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "400", wantBody: "bad CONNECT target"},
		"CONNECT to the proxy via 0.0.0.0": {req: "CONNECT 0.0.0.0:%SELFPORT% HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "508", wantBody: "loop_detected"},
		"CONNECT to a closed port":         {req: "CONNECT %DEAD% HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: "502", wantBody: "X-Gatepass-Error: upstream_unreachable"},
		"GET through the proxy to itself":  {req: "GET http://%SELF%/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wantStatus: "508"},
		"oversized headers":                {req: "GET http://example.com/ HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2*maxHeaderBytes) + "\r\n\r\n", wantStatus: "431", wantBody: "X-Gatepass-Error: request_header_too_large"},
		"bad header line":                  {req: "GET http://example.com/ HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", wantStatus: "400"},
		"status page POST":                 {req: "POST / HTTP/1.1\r\nHost: %SELF%\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", wantStatus: "405"},
	}
	dead := "127.0.0.1:" + closedPort(t)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, selfPort, _ := net.SplitHostPort(e.srv.Addr())
			req := strings.NewReplacer("%SELF%", e.srv.Addr(), "%SELFPORT%", selfPort, "%DEAD%", dead).Replace(tc.req)
			out := rawRequest(t, e.srv.Addr(), req)
			if !strings.HasPrefix(out, "HTTP/1.1 "+tc.wantStatus) || !strings.Contains(out, tc.wantBody) {
				t.Errorf("got %q, want status %s with %q", trunc(out), tc.wantStatus, tc.wantBody)
			}
		})
	}
	// Still serving, and no token was asked for or sent anywhere.
	if resp, body := get(t, e.client(), e.otherHTTPURL()+"/after"); resp.StatusCode != 200 {
		t.Errorf("proxy stopped serving: %d %q", resp.StatusCode, body)
	}
	if len(e.tlsGW.requests()) != 0 {
		t.Errorf("bad input reached the gateway")
	}
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

func TestUpstreamResetMidBody(t *testing.T) {
	e := newEnv(t)
	reset := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reset" {
			w.Header().Set("Content-Length", "100000")
		} // else chunked: the fast path hands the answer to net/http's parser
		w.WriteHeader(200)
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil { // HTTP/2: reset the stream instead
			panic(http.ErrAbortHandler)
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	e.plainGW.handler, e.tlsGW.handler = reset, reset
	c := e.client()
	for _, u := range []string{e.plainGWURL() + "/reset", e.tlsGWURL() + "/reset", e.plainGWURL() + "/reset-chunked"} {
		// The client must see an error (before or during the body), never a body that
		// looks complete.
		resp, err := c.Get(u)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Errorf("%s: truncated body read without error: the proxy hid the reset", u)
		}
	}
	e.plainGW.handler, e.tlsGW.handler = nil, nil
	for _, u := range []string{e.plainGWURL() + "/after", e.tlsGWURL() + "/after"} {
		if resp, _ := get(t, c, u); resp.StatusCode != 200 {
			t.Errorf("%s after a reset: %d", u, resp.StatusCode)
		}
	}
	waitFor(t, func() bool {
		n := 0
		for _, en := range e.entries.all() {
			if strings.HasPrefix(en.Path, "/reset") && en.Err != "" {
				n++
			}
		}
		return n == 3
	}, "each reset logged with an error")
}

func TestUpstreamRefusesBody(t *testing.T) {
	e := newEnv(t)
	// The upstream answers 413 without reading a large upload: passed back
	// faithfully, on the plain path and inside an intercepted tunnel, although the
	// client is still sending when the proxy closes the connection.
	refuse := func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too big", http.StatusRequestEntityTooLarge)
	}
	e.plainGW.handler, e.tlsGW.handler = refuse, refuse
	for _, u := range []string{e.plainGWURL(), e.tlsGWURL()} {
		for i := range 5 {
			req, _ := http.NewRequest("POST", u+"/upload", io.LimitReader(zeros{}, 8<<20))
			resp, err := e.client().Do(req)
			if err != nil {
				t.Fatalf("%s, upload %d: %v", u, i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "too big") {
				t.Errorf("%s, upload %d: got %d %q", u, i, resp.StatusCode, b)
			}
		}
	}
}

func TestClientDisconnectMidStream(t *testing.T) {
	e := newEnv(t)
	var upstreamErr atomic.Value
	stream := func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		for i := 0; ; i++ {
			if _, err := w.Write(buf); err != nil {
				upstreamErr.Store(err)
				return
			}
			w.(http.Flusher).Flush()
			if i > 100000 {
				return
			}
		}
	}
	e.plainGW.handler, e.tlsGW.handler = stream, stream
	// With a Content-Length the answer takes the fast path; without, net/http's.
	sized := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(100001*32<<10))
		stream(w, r)
	}
	e.otherHTTP.handler = sized
	for _, u := range []string{e.plainGWURL() + "/stream", e.tlsGWURL() + "/stream", e.otherHTTPURL() + "/stream"} {
		upstreamErr = atomic.Value{}
		c := e.client()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadFull(resp.Body, make([]byte, 256<<10))
		resp.Body.Close() // client goes away mid-stream
		c.CloseIdleConnections()
		waitFor(t, func() bool { return upstreamErr.Load() != nil }, "upstream sees the client go away")
	}
	e.plainGW.handler, e.tlsGW.handler, e.otherHTTP.handler = nil, nil, nil
	if resp, _ := get(t, e.client(), e.tlsGWURL()+"/after"); resp.StatusCode != 200 {
		t.Errorf("proxy stopped serving after a client disconnect")
	}
	// The log blames the side that left: the client, not the upstream body.
	n := 0
	for _, l := range e.entries.all() {
		if l.Path == "/stream" {
			n++
			if l.Err != "client went away mid-body" {
				t.Errorf("log of %s%s: err %q, want the client's leaving", l.Host, l.Path, l.Err)
			}
		}
	}
	if n != 3 {
		t.Errorf("%d log entries for /stream, want 3", n)
	}
}

func TestSlowTokenSourceTimesOutOnClientCancel(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	defer close(block)
	src := &blockingSource{fakeSource: e.src, block: block}
	e.srv.tokens = src
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.plainGWURL()+"/slow", nil)
	_, err := e.client().Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	waitFor(t, func() bool { return src.canceled.Load() }, "TokenFor's context canceled when the client left")
}

type blockingSource struct {
	*fakeSource
	block    chan struct{}
	canceled atomic.Bool
}

func (b *blockingSource) TokenFor(ctx context.Context, host, port string) (Token, error) {
	select {
	case <-ctx.Done():
		b.canceled.Store(true)
		return Token{}, ctx.Err()
	case <-b.block:
		return Token{}, errors.New("unblocked")
	}
}

func TestShutdownDrainsInFlight(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{}, 2)
	slow := func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "done")
	}
	e.plainGW.handler, e.tlsGW.handler = slow, slow
	c := e.client()
	// Open the intercepted tunnel first so Shutdown has a hijacked connection to drain.
	if resp, _ := get(t, c, e.tlsGWURL()+"/warm"); resp.StatusCode != 200 {
		t.Fatal("warm-up failed")
	}
	<-started
	results := make(chan string, 2)
	for _, u := range []string{e.plainGWURL() + "/slow", e.tlsGWURL() + "/slow"} {
		go func() {
			resp, err := c.Get(u)
			if err != nil {
				results <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- fmt.Sprint(resp.StatusCode, " ", string(b))
		}()
	}
	<-started
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	for range 2 {
		if r := <-results; r != "200 done" {
			t.Errorf("in-flight request during shutdown: %s", r)
		}
	}
	if _, err := net.DialTimeout("tcp", e.srv.Addr(), time.Second); err == nil {
		t.Errorf("still accepting after Shutdown")
	}
}

// TestShutdownCutsOff: when Shutdown's time runs out with requests in flight (on the
// request loop, inside an intercepted tunnel, and a non-gateway one), it says so
// with ErrCutOff, and their log lines say the proxy cut them off, not that the client left.
func TestShutdownCutsOff(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 3)
	slow := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4")
		w.WriteHeader(200)
		w.(http.Flusher).Flush() // the head, then the body never comes
		started <- struct{}{}
		<-release
	}
	e.plainGW.handler, e.tlsGW.handler, e.otherHTTP.handler = slow, slow, slow
	c := e.client()
	urls := []string{e.plainGWURL() + "/slow", e.tlsGWURL() + "/slow", e.otherHTTPURL() + "/slow"}
	results := make(chan error, len(urls))
	for _, u := range urls {
		go func() {
			resp, err := c.Get(u)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			results <- err
		}()
	}
	for range urls {
		<-started
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	if !errors.Is(err, ErrCutOff) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with requests in flight past its time = %v, want ErrCutOff wrapping the deadline", err)
	}
	for range urls {
		if err := <-results; err == nil {
			t.Errorf("a request cut off by Shutdown read a whole body")
		}
	}
	// Each request logs when it ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var cut []string
		for _, l := range e.entries.all() {
			if l.Path == "/slow" {
				if strings.Contains(l.Err, "client went away") {
					t.Fatalf("a request the proxy cut off is logged as %q", l.Err)
				}
				cut = append(cut, l.Err)
			}
		}
		if len(cut) == len(urls) {
			for _, msg := range cut {
				if !strings.HasPrefix(msg, "cut off: the proxy shut down") {
					t.Errorf("log of a request cut off by Shutdown: err=%q", msg)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log entries of the cut-off requests: %+v", e.entries.all())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnectOverBrokenTLS(t *testing.T) {
	e := newEnv(t)
	// A client that CONNECTs to a gateway and then sends garbage instead of a TLS
	// handshake, or hangs up: the proxy carries on.
	for _, payload := range []string{"\x16\x03\x01\x00\x05hello", ""} {
		conn, err := net.Dial("tcp", e.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		host := "localhost:" + e.tlsGW.port()
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", host, host)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		io.WriteString(conn, payload)
		conn.Close()
	}
	if resp, _ := get(t, e.client(), e.tlsGWURL()+"/after"); resp.StatusCode != 200 {
		t.Errorf("proxy stopped serving")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTokenCtx: a token lookup's context times out after tokenTimeout once waited on,
// follows its parent, is done after the lookup, and makes no timer for a lookup that
// never waits.
func TestTokenCtx(t *testing.T) {
	quick := &tokenCtx{Context: context.Background()}
	quick.end()
	if quick.cancel != nil {
		t.Error("a lookup that never waited made a timeout context")
	}
	if quick.Err() == nil {
		t.Error("the context of an ended lookup is not done")
	}

	parent, cancel := context.WithCancel(context.WithValue(context.Background(), tunnelKey{}, "v"))
	c := &tokenCtx{Context: parent}
	dl, ok := c.Deadline()
	if left := time.Until(dl); !ok || left < tokenTimeout-time.Second || left > tokenTimeout {
		t.Errorf("deadline in %v (set %v), want about %v", left, ok, tokenTimeout)
	}
	if c.Value(tunnelKey{}) != "v" {
		t.Error("values of the parent are lost")
	}
	cancel()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled parent did not end the lookup's context")
	}
	c.end()
}

// fixedSource answers every token lookup with tok; the allow-list is fakeSource's.
type fixedSource struct {
	*fakeSource
	tok   Token
	calls atomic.Int32
}

func (f *fixedSource) TokenFor(ctx context.Context, host, port string) (Token, error) {
	f.calls.Add(1)
	return f.tok, nil
}

// TestUnusableToken: a token the broker hands over that cannot be used (expired,
// empty, not a valid field value, for a header the proxy does not set) is never
// sent: the client gets a 503 token_unavailable naming the gateway and the reason,
// the upstream gets nothing, and the value appears in no answer, log line or
// OnRequest entry. Tokens that differ only in the header's case go through.
func TestUnusableToken(t *testing.T) {
	e := newEnv(t)
	src := &fixedSource{fakeSource: e.src}
	e.srv.tokens = src
	c := e.client()
	plainGW, tlsGW := "localhost:"+e.plainGW.port(), "localhost:"+e.tlsGW.port()
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Minute)

	tests := []struct {
		name string
		tok  Token
		// want is the refusal's reason, with %s for the gateway; "" for a token
		// that must go through in wantHeader.
		want, wantHeader string
	}{
		{name: "expired", tok: Token{Value: "expired", Expiry: past}, want: "the broker returned an expired token for %s; try again"},
		{name: "expiring as it is used", tok: Token{Value: "now", Expiry: time.Now()}, want: "expired token for %s"},
		{name: "empty", tok: Token{Expiry: future}, want: "the broker returned an unusable token for %s"},
		{name: "empty without expiry", tok: Token{Header: "Authorization"}, want: "unusable token for %s"},
		{name: "line break in the value", tok: Token{Value: "crlf\r\nX-Injected: 1", Expiry: future}, want: "unusable token for %s"},
		{name: "unsupported header", tok: Token{Value: "xkey", Header: "X-Api-Key", Expiry: future}, want: `the broker asked for unsupported header "X-Api-Key"`},
		{name: "Cookie header", tok: Token{Value: "cookie", Header: "Cookie", Expiry: future}, want: `unsupported header "Cookie"`},
		{name: "line break in the header", tok: Token{Value: "hdrcrlf", Header: "Authorization\r\nX-Injected: 1", Expiry: future}, want: "unsupported header"},
		// Controls: the fixture does pass a usable token on.
		{name: "lowercase authorization", tok: Token{Value: "lower", Header: "authorization", Expiry: future}, wantHeader: "Authorization"},
		{name: "proxy-authorization", tok: Token{Value: "proxyauth", Header: "PROXY-AUTHORIZATION"}, wantHeader: "Proxy-Authorization"},
	}
	paths := []struct {
		name, url string
		up        *upstream
		gw        string
		hdr       []string
	}{
		{name: "plain fast path", url: e.plainGWURL() + "/fast", up: e.plainGW, gw: plainGW},
		// The fast path declines TE: the loop's net/http path carries it.
		{name: "plain net/http path", url: e.plainGWURL() + "/slow", up: e.plainGW, gw: plainGW, hdr: []string{"Te", "trailers"}},
		{name: "intercepted TLS", url: e.tlsGWURL() + "/tls", up: e.tlsGW, gw: tlsGW},
	}
	var values []string
	for _, tc := range tests {
		for _, p := range paths {
			t.Run(tc.name+"/"+p.name, func(t *testing.T) {
				tok := tc.tok
				if tok.Value != "" {
					tok.Value = canaryPrefix + strings.ReplaceAll(tc.name+"-"+p.name, " ", "-") + "-" + tok.Value
					values = append(values, tok.Value)
				}
				src.tok = tok
				calls, sent := src.calls.Load(), len(p.up.requests())
				resp, body := get(t, c, p.url, p.hdr...)
				dump, _ := httputil.DumpResponse(resp, false)
				if src.calls.Load() == calls {
					t.Fatal("the token source was not asked: the case proves nothing")
				}
				if tok.Value != "" && strings.Contains(string(dump)+body, tok.Value) || strings.Contains(string(dump)+body, canaryPrefix) {
					t.Errorf("TOKEN LEAK in the answer:\n%s%s", dump, body)
				}
				got := p.up.requests()[sent:]
				if tc.want == "" {
					if resp.StatusCode != 200 || len(got) != 1 {
						t.Fatalf("usable token: status %d, %d upstream requests: %s", resp.StatusCode, len(got), body)
					}
					if v := got[0].Header.Get(tc.wantHeader); v != "Bearer "+tok.Value {
						t.Errorf("upstream %s = %q, want the token", tc.wantHeader, v)
					}
					return
				}
				if len(got) != 0 {
					t.Errorf("the upstream received %d requests for an unusable token: %v", len(got), got)
				}
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("status %d, want 503:\n%s%s", resp.StatusCode, dump, body)
				}
				var eb errorBody
				if err := json.Unmarshal([]byte(body), &eb); err != nil {
					t.Fatalf("body is not JSON: %v: %q", err, body)
				}
				if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Gatepass-Error") != "token_unavailable" || eb.Error != "token_unavailable" {
					t.Errorf("answer is not a token_unavailable refusal:\n%s%s", dump, body)
				}
				if eb.Profile != "work" {
					t.Errorf("profile %q, want work", eb.Profile)
				}
				if want := "gatepass status --profile work"; !strings.Contains(eb.Hint, want) {
					t.Errorf("hint %q, want it to say %q", eb.Hint, want)
				}
				if want := strings.ReplaceAll(tc.want, "%s", p.gw); !strings.Contains(eb.Reason, want) {
					t.Errorf("reason %q, want it to say %q", eb.Reason, want)
				}
			})
		}
	}
	waitFor(t, func() bool { return len(e.entries.all()) >= len(tests)*len(paths) }, "every request logged")
	logs := e.logs.String()
	if !strings.Contains(logs, "token_unavailable") {
		t.Errorf("no refusal in the log: the log check proves nothing")
	}
	for _, v := range values {
		// The first line of the value: a line break in it must not hide a leak.
		v, _, _ = strings.Cut(v, "\r")
		if strings.Contains(logs, v) {
			t.Errorf("TOKEN LEAK in the log: %q", v)
		}
		for _, en := range e.entries.all() {
			if strings.Contains(fmt.Sprintf("%+v", en), v) {
				t.Errorf("TOKEN LEAK in OnRequest entry %+v", en)
			}
		}
	}
	refused, want := 0, 0
	for _, tc := range tests {
		if tc.want != "" {
			want += len(paths)
		}
	}
	for _, en := range e.entries.all() {
		if en.Status == http.StatusServiceUnavailable && en.Err == "token_unavailable" && !en.Injected {
			refused++
		}
	}
	if refused != want {
		t.Errorf("%d requests logged as token_unavailable, want %d", refused, want)
	}
}

// TestHalfCloseGetsNoMadeUpAnswer: a client that half-closes after its request
// (`printf … | nc -N`) counts as gone while the upstream is still working, as with
// nginx. It must then get nothing, never an answer the upstream did not give: net/http
// answered an HTTP/1.0 request an empty 200 when the handler wrote nothing.
func TestHalfCloseGetsNoMadeUpAnswer(t *testing.T) {
	e := newEnv(t)
	e.otherHTTP.handler = func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(700 * time.Millisecond) // past the proxy's hang-up watch
		io.WriteString(w, "the late answer")
	}
	for _, proto := range []string{"HTTP/1.0", "HTTP/1.1"} {
		t.Run(proto, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", e.srv.Addr(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET %s/slow %s\r\nHost: %s\r\n\r\n", e.otherHTTPURL(), proto, strings.TrimPrefix(e.otherHTTPURL(), "http://"))
			c.(*net.TCPConn).CloseWrite()
			out, _ := io.ReadAll(c)
			if len(out) > 0 && !strings.Contains(string(out), "the late answer") {
				t.Errorf("got an answer the upstream did not give: %q", out)
			}
		})
	}
	if resp, body := get(t, e.client(), e.otherHTTPURL()+"/after"); resp.StatusCode != 200 {
		t.Errorf("proxy stopped serving: %d %q", resp.StatusCode, body)
	}
}
