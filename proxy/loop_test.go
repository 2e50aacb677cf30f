package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// loopHandler answers the loop tests' upstream requests to u by path.
func loopHandler(u *upstream) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { loopAnswer(u, w, r) }
}

func loopAnswer(u *upstream, w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/fixed":
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "fixed")
	case "/chunked":
		io.WriteString(w, "part1,")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
	case "/trailer":
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "with a trailer")
		w.Header().Set("X-Sum", "42")
	case "/nocontent":
		w.WriteHeader(http.StatusNoContent)
	case "/notmodified":
		w.Header().Set("ETag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
	case "/echo": // u.serve has read the body
		reqs := u.requests()
		b := reqs[len(reqs)-1].Body
		fmt.Fprintf(w, "echo %d: %s", len(b), b)
	case "/slow":
		time.Sleep(3 * watchAfter / 2) // the loop starts watching the client meanwhile
		io.WriteString(w, "slow")
	case "/early":
		// Answers without reading the rest of the upload (u.serve reads 1 MiB).
		w.Header().Set("Connection", "close")
		io.WriteString(w, "early")
	default:
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}
}

// loopEnv is an env with two intercepted TLS gateways running loopHandler: one that
// offers HTTP/2 (the proxy reaches it through http.Transport) and one HTTP/1.1 only
// (the proxy's own pool).
func loopEnv(t *testing.T) (*env, map[string]*upstream) {
	e := newEnv(t)
	h1 := newUpstream(t, "tls-h1", e.pki, false)
	e.src.add("localhost:"+h1.port(), Gateway{Profile: "work"})
	ups := map[string]*upstream{"h2 upstream": e.tlsGW, "h1 upstream": h1}
	for _, u := range ups {
		u.handler = loopHandler(u)
	}
	return e, ups
}

// TestLoopServesOrdinaryRequests: the request loop serves every kind of ordinary
// request inside an intercepted tunnel itself (no hand-over), with the token, the
// framing and the keep-alive a client expects.
func TestLoopServesOrdinaryRequests(t *testing.T) {
	e, ups := loopEnv(t)
	for name, u := range ups {
		t.Run(name, func(t *testing.T) {
			c, dials := e.countingClient()
			base := "https://localhost:" + u.port()
			do := func(method, path string, body io.Reader, want string, wantStatus int) *http.Response {
				t.Helper()
				req, _ := http.NewRequest(method, base+path, body)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != wantStatus || string(b) != want {
					t.Fatalf("%s %s: %d %q (%v), want %d %q", method, path, resp.StatusCode, b, err, wantStatus, want)
				}
				return resp
			}
			resp := do("GET", "/fixed", nil, "fixed", 200)
			if resp.ContentLength != 5 || resp.TransferEncoding != nil {
				t.Errorf("/fixed: length %d, transfer encoding %v; want Content-Length 5", resp.ContentLength, resp.TransferEncoding)
			}
			if resp.Header.Get("Date") == "" {
				t.Errorf("/fixed: no Date header")
			}
			do("GET", "/chunked", nil, "part1,part2", 200)
			if resp := do("GET", "/trailer", nil, "with a trailer", 200); resp.Trailer.Get("X-Sum") != "42" {
				t.Errorf("/trailer: trailer %v, want X-Sum: 42", resp.Trailer)
			}
			do("GET", "/nocontent", nil, "", 204)
			if resp := do("GET", "/notmodified", nil, "", 304); resp.Header.Get("ETag") != `"v1"` {
				t.Errorf("/notmodified: ETag %q", resp.Header.Get("ETag"))
			}
			if resp := do("HEAD", "/fixed", nil, "", 200); resp.ContentLength != 5 {
				t.Errorf("HEAD /fixed: Content-Length %d, want the upstream's 5", resp.ContentLength)
			}
			do("POST", "/echo", strings.NewReader("twelve bytes"), "echo 12: twelve bytes", 200)
			// Unknown length: the client sends it chunked.
			do("POST", "/echo", io.MultiReader(strings.NewReader("chunked "), strings.NewReader("upload")), "echo 14: chunked upload", 200)
			do("GET", "/slow", nil, "slow", 200)
			do("GET", "/after-slow", nil, "hello /after-slow", 200)
			if n := dials.Load(); n != 1 {
				t.Errorf("the client opened %d connections, want 1 (keep-alive through every request)", n)
			}

			// An upload the upstream does not read: the answer arrives, and the
			// connection is not reused (the rest of the upload cannot be told
			// from a next request).
			do("POST", "/early", io.LimitReader(zeros{}, 4<<20), "early", 200)
			do("GET", "/after-early", nil, "hello /after-early", 200)

			for _, r := range u.requests() {
				if r.Header.Get("Authorization") != "Bearer "+e.src.current() {
					t.Errorf("%s %s reached the gateway without the token", r.Method, r.URI)
				}
			}
		})
	}
	if n := e.srv.handedOver.Load(); n != 0 {
		t.Errorf("%d connections were handed to the http.Server; ordinary requests must stay in the loop", n)
	}
	checkNoCanary(t, e.logs.String())
}

// openTunnel CONNECTs to host through the proxy and completes TLS with gatepass's CA.
func openTunnel(t testing.TB, e *env, host string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", e.srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", host, host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", host, resp, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.srv.CACertPEM())
	tc := tls.Client(conn, &tls.Config{ServerName: "localhost", RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc, bufio.NewReader(tc)
}

// readResponse reads one response and its body from br.
func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	for err == nil && resp.StatusCode < 200 { // 100 Continue
		resp, err = http.ReadResponse(br, &http.Request{Method: method})
	}
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(b)
}

// TestLoopHandsOver: what the loop does not serve itself goes, unread, to the
// intercepting http.Server, which answers it as before, and keeps serving the
// connection.
func TestLoopHandsOver(t *testing.T) {
	e, ups := loopEnv(t)
	u := ups["h1 upstream"]
	host := "localhost:" + u.port()
	tests := map[string]struct {
		req        string
		wantStatus int
		wantBody   string
		thenServes bool // the connection stays open for another request
		here       bool // a head net/http cannot read: the loop answers it (JSON), no hand-over
	}{
		"HTTP/1.0": {
			req:        "GET /ten HTTP/1.0\r\nHost: " + host + "\r\n\r\n",
			wantStatus: 200, wantBody: "hello /ten",
		},
		"Expect: 100-continue": {
			req:        "POST /echo HTTP/1.1\r\nHost: " + host + "\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
			wantStatus: 200, wantBody: "echo 5: hello", thenServes: true,
		},
		"absolute-form target": {
			req:        "GET https://" + host + "/abs HTTP/1.1\r\nHost: " + host + "\r\n\r\n",
			wantStatus: 200, wantBody: "hello /abs", thenServes: true,
		},
		"head larger than the loop's buffer": {
			req:        "GET /big HTTP/1.1\r\nHost: " + host + "\r\nX-Big: " + strings.Repeat("b", 20<<10) + "\r\n\r\n",
			wantStatus: 200, wantBody: "hello /big", thenServes: true,
		},
		"head larger than the server allows": {
			req:        "GET /huge HTTP/1.1\r\nHost: " + host + "\r\nX-Big: " + strings.Repeat("b", 2*maxHeaderBytes) + "\r\n\r\n",
			wantStatus: 431, wantBody: `"error":"request_header_too_large"`, here: true,
		},
		"head just within what the server allows": {
			req:        "GET /max HTTP/1.1\r\nHost: " + host + "\r\nX-Big: " + strings.Repeat("b", maxHeaderBytes-200) + "\r\n\r\n",
			wantStatus: 200, wantBody: "hello /max", thenServes: true,
		},
		"malformed request line": {
			req:        "GET\r\nHost: " + host + "\r\n\r\n",
			wantStatus: 400, wantBody: `"error":"bad_request"`, here: true,
		},
		"no Host": {
			req:        "GET /nohost HTTP/1.1\r\n\r\n",
			wantStatus: 400,
		},
		"bad header name": {
			req:        "GET /badname HTTP/1.1\r\nHost: " + host + "\r\nBad Name: x\r\n\r\n",
			wantStatus: 400,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := e.srv.handedOver.Load()
			conn, br := openTunnel(t, e, host)
			if _, err := io.WriteString(conn, tc.req); err != nil {
				t.Fatal(err)
			}
			resp, body := readResponse(t, br, "GET")
			if resp.StatusCode != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, trunc(body), tc.wantStatus, tc.wantBody)
			}
			if n, want := e.srv.handedOver.Load()-before, map[bool]int64{false: 1, true: 0}[tc.here]; n != want {
				t.Errorf("handed over %d connections, want %d", n, want)
			}
			if tc.thenServes {
				io.WriteString(conn, "GET /next HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
				if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != "hello /next" {
					t.Errorf("next request on the handed-over connection: %d %q", resp.StatusCode, body)
				}
			}
		})
	}
	for _, r := range u.requests() {
		if r.Header.Get("Authorization") != "Bearer "+e.src.current() {
			t.Errorf("%s %s reached the gateway without the token", r.Method, r.URI)
		}
	}
	checkNoCanary(t, e.logs.String())
}

// TestLoopPipelining: requests sent back to back before any answer are answered in
// order on the same connection.
func TestLoopPipelining(t *testing.T) {
	e, ups := loopEnv(t)
	for name, u := range ups {
		t.Run(name, func(t *testing.T) {
			host := "localhost:" + u.port()
			conn, br := openTunnel(t, e, host)
			var reqs strings.Builder
			for i := range 5 {
				fmt.Fprintf(&reqs, "GET /p%d HTTP/1.1\r\nHost: %s\r\n\r\n", i, host)
			}
			fmt.Fprintf(&reqs, "POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 3\r\n\r\nabc", host)
			fmt.Fprintf(&reqs, "GET /last HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
			io.WriteString(conn, reqs.String())
			for i := range 5 {
				if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != fmt.Sprintf("hello /p%d", i) {
					t.Fatalf("response %d: %d %q", i, resp.StatusCode, body)
				}
			}
			if resp, body := readResponse(t, br, "POST"); resp.StatusCode != 200 || body != "echo 3: abc" {
				t.Fatalf("POST: %d %q", resp.StatusCode, body)
			}
			resp, body := readResponse(t, br, "GET")
			if resp.StatusCode != 200 || body != "hello /last" || !resp.Close {
				t.Fatalf("last: %d %q close=%v, want 200 and Connection: close", resp.StatusCode, body, resp.Close)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after Connection: close the proxy left the connection open (%v)", err)
			}
		})
	}
	if n := e.srv.handedOver.Load(); n != 0 {
		t.Errorf("%d connections handed over, want 0", n)
	}
}

// TestLoopRefusalsInTunnel: refusals made up inside the loop (sign-in required, a
// request for another host) are complete responses, and the tunnel goes on.
func TestLoopRefusalsInTunnel(t *testing.T) {
	e, ups := loopEnv(t)
	u := ups["h1 upstream"]
	host := "localhost:" + u.port()
	conn, br := openTunnel(t, e, host)
	io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n")
	if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 421 || !strings.Contains(body, "misdirected_request") {
		t.Errorf("Host mismatch inside the tunnel: %d %q, want 421 misdirected_request", resp.StatusCode, body)
	}
	e.src.mu.Lock()
	e.src.signIn["work"] = true
	e.src.mu.Unlock()
	io.WriteString(conn, "GET /y HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 401 || !strings.Contains(body, "gatepass login --profile work") {
		t.Errorf("signed out: %d %q, want 401 with the hint", resp.StatusCode, body)
	}
	if len(u.requests()) != 0 {
		t.Errorf("refused requests reached the gateway")
	}
	if n := e.srv.handedOver.Load(); n != 0 {
		t.Errorf("%d connections handed over, want 0", n)
	}
}

// TestClosedTunnelsForgotten: the set of taken-over connections that Shutdown closes
// does not keep tunnels that have ended (it grew by one per CONNECT for the life of
// the proxy).
func TestClosedTunnelsForgotten(t *testing.T) {
	e := newEnv(t)
	targets := []string{"127.0.0.1:" + e.otherHTTP.port(), "localhost:" + e.tlsGW.port()} // blind, intercepted
	const n = 300
	for i := range n {
		conn, err := net.DialTimeout("tcp", e.srv.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		host := targets[i%2]
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", host, host)
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT %s: %v %v", host, resp, err)
		}
		conn.Close()
		if i%50 == 49 {
			// Let the proxy notice the ends before the next batch.
			time.Sleep(50 * time.Millisecond)
		}
	}
	e.srv.mu.Lock()
	kept := len(e.srv.hijacked)
	e.srv.mu.Unlock()
	if kept > 2*64 {
		t.Errorf("after %d closed tunnels the proxy still tracks %d connections", n, kept)
	}
	t.Logf("tracked after %d closed tunnels: %d", n, kept)
}

// TestListenLoop: on the listen port, the request loop serves absolute-form requests
// (a plain-HTTP gateway and another host) itself, and hands the rest, unread, to the
// listen port's http.Server: CONNECT, the status page, HTTP/1.0, 100-continue, a
// request without a Host field.
func TestListenLoop(t *testing.T) {
	e := newEnv(t)
	e.plainGW.handler = loopHandler(e.plainGW)
	e.otherHTTP.handler = loopHandler(e.otherHTTP)
	c, dials := e.countingClient()
	for _, u := range []*upstream{e.plainGW, e.otherHTTP} {
		base := map[*upstream]string{e.plainGW: e.plainGWURL(), e.otherHTTP: e.otherHTTPURL()}[u]
		for _, tc := range []struct{ method, path, body, want string }{
			{"GET", "/fixed", "", "fixed"},
			{"GET", "/chunked", "", "part1,part2"},
			{"POST", "/echo", "twelve bytes", "echo 12: twelve bytes"},
			{"GET", "/slow", "", "slow"},
		} {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, base+tc.path, body)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s %s%s: %v", tc.method, base, tc.path, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != tc.want {
				t.Errorf("%s %s%s: %d %q, want %q", tc.method, base, tc.path, resp.StatusCode, b, tc.want)
			}
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("the client opened %d connections, want 1 (keep-alive)", n)
	}
	if n := e.srv.handedOverListen.Load(); n != 0 {
		t.Errorf("%d connections handed to the http.Server; absolute-form requests must stay in the loop", n)
	}
	for _, r := range e.plainGW.requests() {
		if r.Header.Get("Authorization") != "Bearer "+e.src.current() {
			t.Errorf("%s %s reached the plain gateway without the token", r.Method, r.URI)
		}
	}
	for _, r := range e.otherHTTP.requests() {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("%s %s reached a non-gateway with an Authorization header", r.Method, r.URI)
		}
	}

	other := "127.0.0.1:" + e.otherHTTP.port()
	for name, tc := range map[string]struct {
		req, want string
	}{
		// A head net/http cannot read is answered by the loop itself (below).
		"status page":          {"GET / HTTP/1.1\r\nHost: " + e.srv.Addr() + "\r\nConnection: close\r\n\r\n", "HTTP/1.1 200"},
		"HTTP/1.0":             {"GET http://" + other + "/ten HTTP/1.0\r\nHost: " + other + "\r\n\r\n", "hello /ten"},
		"Expect: 100-continue": {"POST http://" + other + "/echo HTTP/1.1\r\nHost: " + other + "\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi", "echo 2: hi"},
		"no Host field":        {"GET http://" + other + "/nohost HTTP/1.1\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"},
		"folded Host field":    {"GET http://" + other + "/folded HTTP/1.1\r\nHost: a\r\n b\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"},
		"CONNECT refused":      {"CONNECT localhost:0 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
	} {
		t.Run(name, func(t *testing.T) {
			before := e.srv.handedOverListen.Load()
			if out := rawRequest(t, e.srv.Addr(), tc.req); !strings.Contains(out, tc.want) {
				t.Errorf("got %q, want %q in it", trunc(out), tc.want)
			}
			if n := e.srv.handedOverListen.Load() - before; n != 1 {
				t.Errorf("handed over %d connections, want 1", n)
			}
		})
	}
	t.Run("two Host fields", func(t *testing.T) {
		before := e.srv.handedOverListen.Load()
		out := rawRequest(t, e.srv.Addr(), "GET http://"+other+"/twohosts HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 400") || !strings.Contains(out, "X-Gatepass-Error: bad_request") || !strings.Contains(out, "too many Host headers") {
			t.Errorf("got %q, want the loop's 400 with net/http's reason", trunc(out))
		}
		if n := e.srv.handedOverListen.Load() - before; n != 0 {
			t.Errorf("handed over %d connections, want 0", n)
		}
	})
}

// TestLoopKeepsConnectionAfterSmallUnreadUpload: when the upstream answers without
// reading a small upload, the loop reads the rest itself (up to 256 KiB, as net/http
// does) and keeps the client's connection; the rest never passes for a request.
func TestLoopKeepsConnectionAfterSmallUnreadUpload(t *testing.T) {
	e := newEnv(t)
	early := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream-in" { // u.serve does not read this one
			io.WriteString(w, "early")
			return
		}
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}
	e.plainGW.handler, e.tlsGW.handler = early, early
	for _, base := range []string{e.plainGWURL(), e.tlsGWURL()} {
		c, dials := e.countingClient()
		for i := range 3 {
			// GET, then the upload: the upload must not end the connection.
			if resp, body := get(t, c, fmt.Sprintf("%s/before-%d", base, i)); resp.StatusCode != 200 || body != fmt.Sprintf("hello /before-%d", i) {
				t.Fatalf("%s GET %d: %d %q", base, i, resp.StatusCode, body)
			}
			// Bytes that would read as a request if the loop took them for one.
			upload := strings.Repeat("GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 100<<10/36)
			resp, err := c.Post(base+"/stream-in", "text/plain", strings.NewReader(upload))
			if err != nil {
				t.Fatalf("%s upload %d: %v", base, i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "early" {
				t.Fatalf("%s upload %d: %d %q", base, i, resp.StatusCode, b)
			}
		}
		if n := dials.Load(); n != 1 {
			t.Errorf("%s: the client opened %d connections, want 1 (kept after each upload)", base, n)
		}
	}
	for _, u := range []*upstream{e.plainGW, e.tlsGW} {
		for _, r := range u.requests() {
			if strings.Contains(r.URI, "smuggled") {
				t.Errorf("%s: an upload's bytes reached the gateway as a request", u.name)
			}
		}
	}
}

// FuzzLoopHead checks what the loop assumes of a request head against net/http:
// http.ReadRequest reads exactly the head headLen found (never more, since the
// loop replays the head on a hand-over), and the Host field the loop checks on the
// listen port is the one net/http's server would check.
func FuzzLoopHead(f *testing.F) {
	for _, s := range []string{
		"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"GET http://a/ HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nhost: a\r\nHOST: b\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nX: y\r\n\tz\r\nHost:  a \r\n\r\n",
		"\r\nGET / HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		n, err := headLen(br, func(time.Time, time.Duration) {})
		if err != nil {
			return
		}
		b, _ := br.Peek(n)
		head := bytes.Clone(b)
		buffered := br.Buffered()
		_, err = http.ReadRequest(br)
		took := buffered - br.Buffered()
		if took > n {
			t.Fatalf("ReadRequest read %d bytes past a %d-byte head %q", took, n, head)
		}
		if err != nil {
			return
		}
		if took != n {
			t.Fatalf("ReadRequest took %d bytes of a %d-byte head %q", took, n, head)
		}
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
		if _, err := tp.ReadLine(); err != nil {
			t.Fatal(err)
		}
		hdr, err := tp.ReadMIMEHeader()
		if err != nil {
			t.Fatalf("ReadRequest accepted a head textproto rejects: %v", err)
		}
		if v, ok := hostField(head); ok && (len(hdr["Host"]) != 1 || hdr["Host"][0] != v) {
			t.Fatalf("hostField found %q; net/http's server sees Host %q in %q", v, hdr["Host"], head)
		}
	})
}

// TestReplayConnOrder: a handed-over connection reads the replayed head, then what
// the loop had buffered, then the connection, through Read and through WriteTo (a
// blind tunnel's copy).
func TestReplayConnOrder(t *testing.T) {
	for _, viaWriteTo := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(client, "buffered|")
		br := bufio.NewReader(server)
		if _, err := br.Peek(len("buffered|")); err != nil {
			t.Fatal(err)
		}
		rc := &replayConn{Conn: server, head: []byte("head|"), br: br}
		go func() {
			io.WriteString(client, strings.Repeat("rest", 10000))
			client.Close()
		}()
		var got bytes.Buffer
		if viaWriteTo {
			_, err = io.Copy(&got, rc) // io.Copy uses rc.WriteTo
		} else {
			_, err = io.Copy(&got, struct{ io.Reader }{rc})
		}
		server.Close()
		if want := "head|buffered|" + strings.Repeat("rest", 10000); err != nil || got.String() != want {
			t.Errorf("WriteTo %v: read %d bytes (%v), want %d in order", viaWriteTo, got.Len(), err, len(want))
		}
	}
}
