package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fastHeadSeeds are request heads for FuzzFastHead and the tests below: some the
// fast path takes, some it must leave to net/http.
var fastHeadSeeds = []string{
	"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
	"GET http://a.example:8080/p/q?x=1&y=%20 HTTP/1.1\r\nHost: a.example:8080\r\nAuthorization: Basic eA==\r\nX-A: b\r\nx-a:  c \r\n\r\n",
	"POST http://a/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
	"GET /in/tunnel HTTP/1.1\r\nHost: localhost:8443\r\nProxy-Connection: keep-alive\r\nKeep-Alive: 5\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\nConnection: close, x-secret\r\n\r\n",
	"GET http://a/a|b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://a/%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://a/ HTTP/1.1\nHost: a\n\n",
	"GET http://a/ HTTP/1.1\r\nHost : a\r\n\r\n",
	"get http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://a/ HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n",
	// Control characters in a field value, which net/http refuses: the fast path must
	// decline them too (found by long fuzzing; seeds so that go test checks them).
	"GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\x01\r\n\r\n",
	"GET /in/tunnel HTTP/1.1\r\nHost: localhost:8443\r\nX: \x1f\r\n\r\n",
	// Differing duplicate Content-Length (request smuggling): declined.
	"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
}

// FuzzFastHead checks the fast path's reading of a request head against net/http's:
// whatever parseFastRequest takes, http.ReadRequest reads the same way (method,
// target, Host, length, Connection: close, each field passed on), and the request
// loop would serve it rather than hand it over (loopable). Every input is tried on
// the listen port and inside a tunnel.
func FuzzFastHead(f *testing.F) {
	for _, s := range fastHeadSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		for _, inTunnel := range []bool{false, true} {
			var fr fastReq
			if !parseFastRequest(head, inTunnel, &fr) {
				continue
			}
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
			if err != nil {
				t.Fatalf("fast path took %q (tunnel %v); net/http rejects it: %v", head, inTunnel, err)
			}
			if !loopable(req, inTunnel, head) {
				t.Fatalf("fast path took %q (tunnel %v); the loop would hand it over", head, inTunnel)
			}
			wantHost := string(fr.host)
			if !inTunnel {
				wantHost = string(fr.authority)
				if req.URL.Scheme != "http" || req.URL.Host != wantHost {
					t.Fatalf("%q: net/http's target %s://%s, fast path's http://%s", head, req.URL.Scheme, req.URL.Host, fr.authority)
				}
			}
			if req.Method != fr.method || req.URL.RequestURI() != string(fr.uri) || req.Host != wantHost {
				t.Fatalf("%q: net/http reads %s %s Host %q; fast path %s %s Host %q", head, req.Method, req.URL.RequestURI(), req.Host, fr.method, fr.uri, wantHost)
			}
			if req.ContentLength != fr.length || req.Close != fr.close || req.TransferEncoding != nil {
				t.Fatalf("%q: net/http reads length %d close %v TE %v; fast path length %d close %v", head, req.ContentLength, req.Close, req.TransferEncoding, fr.length, fr.close)
			}
			var passed int
			for k, vv := range req.Header {
				if isHopHeader(k) || k == "Content-Length" {
					continue
				}
				passed += len(vv)
			}
			if passed != len(fr.fields) {
				t.Fatalf("%q: net/http has %d fields to pass on, fast path %d", head, passed, len(fr.fields))
			}
			for _, fl := range fr.fields {
				if !slices.Contains(req.Header.Values(string(fl.name)), string(fl.value)) {
					t.Fatalf("%q: fast path passes on %s: %q, net/http reads %q", head, fl.name, fl.value, req.Header.Values(string(fl.name)))
				}
			}
		}
	})
}

// FuzzFastResponse checks the fast path's reading of a response head against
// http.ReadResponse: status, framing, Connection: close, the fields it copies.
func FuzzFastResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: x\r\n\r\n",
		"HTTP/1.1 204\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nETag: \"v\"\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, head []byte, isHead bool) {
		method := http.MethodGet
		if isHead {
			method = http.MethodHead
		}
		var fr fastResp
		if !parseFastResponse(head, method, &fr) {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("fast path took %q; net/http rejects it: %v", head, err)
		}
		if resp.StatusCode != fr.status || resp.Close != fr.close || resp.TransferEncoding != nil {
			t.Fatalf("%q: net/http reads %d close %v TE %v; fast path %d close %v", head, resp.StatusCode, resp.Close, resp.TransferEncoding, fr.status, fr.close)
		}
		if !fr.bodyless(method) && resp.ContentLength != fr.length {
			t.Fatalf("%q: net/http reads length %d, fast path %d", head, resp.ContentLength, fr.length)
		}
		for _, fl := range fr.fields {
			if !slices.Contains(resp.Header.Values(string(fl.name)), string(fl.value)) {
				t.Fatalf("%q: fast path copies %s: %q, net/http reads %q", head, fl.name, fl.value, resp.Header.Values(string(fl.name)))
			}
		}
	})
}

// TestFastPathTakes: which of the seed heads the fast path takes, on the listen port.
func TestFastPathTakes(t *testing.T) {
	var fr fastReq
	var took []int
	for i, s := range fastHeadSeeds {
		if parseFastRequest([]byte(s), false, &fr) {
			took = append(took, i)
		}
	}
	if want := []int{0, 1, 2}; !slices.Equal(took, want) {
		t.Errorf("the fast path took seeds %v, want %v", took, want)
	}
	if !parseFastRequest([]byte(fastHeadSeeds[3]), true, &fr) || len(fr.fields) != 0 {
		t.Errorf("in a tunnel, the fast path must take %q and drop its hop-by-hop fields (kept %d)", fastHeadSeeds[3], len(fr.fields))
	}
}

// TestFastPathExchanges: requests the fast path serves on the listen port reach the
// upstream as net/http's path sends them (token in, hop-by-hop fields out, the
// caller's fields as sent) and their answers come back whole, on one client
// connection; what it declines is served by the other path.
func TestFastPathExchanges(t *testing.T) {
	e := newEnv(t)
	e.plainGW.handler = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(1<<20))
			w.Write(bytes.Repeat([]byte("b"), 1<<20))
			return
		}
		loopAnswer(e.plainGW, w, r)
	}
	e.otherHTTP.handler = loopHandler(e.otherHTTP)
	gw := "localhost:" + e.plainGW.port()
	other := "127.0.0.1:" + e.otherHTTP.port()
	c, br := dialProxy(t, e)
	big := strings.Repeat("u", fastMaxBody+1)
	for _, tc := range []struct {
		name, host, head, body string
		fast, slowAnswer       bool
		wantStatus             int
		wantBody               string
	}{
		{"GET, fixed answer", gw, "GET http://" + gw + "/fixed HTTP/1.1\r\nHost: " + gw + "\r\nAuthorization: Basic c3RvbGVu\r\nProxy-Authorization: Basic cHJveHk=\r\nProxy-Connection: keep-alive\r\nX-Keep: 1\r\nx-keep: 2\r\n\r\n", "", true, false, 200, "fixed"},
		{"chunked answer", gw, "GET http://" + gw + "/chunked HTTP/1.1\r\nHost: " + gw + "\r\n\r\n", "", true, true, 200, "part1,part2"},
		{"trailer", gw, "GET http://" + gw + "/trailer HTTP/1.1\r\nHost: " + gw + "\r\n\r\n", "", true, true, 200, "with a trailer"},
		{"204", gw, "GET http://" + gw + "/nocontent HTTP/1.1\r\nHost: " + gw + "\r\n\r\n", "", true, false, 204, ""},
		{"HEAD", gw, "HEAD http://" + gw + "/fixed HTTP/1.1\r\nHost: " + gw + "\r\n\r\n", "", true, false, 200, ""},
		{"small upload", gw, "POST http://" + gw + "/echo HTTP/1.1\r\nHost: " + gw + "\r\nContent-Length: 5\r\n\r\n", "12345", true, false, 200, "echo 5: 12345"},
		{"empty POST", gw, "POST http://" + gw + "/echo HTTP/1.1\r\nHost: " + gw + "\r\n\r\n", "", true, false, 200, "echo 0: "},
		{"upstream closes", gw, "GET http://" + gw + "/close HTTP/1.1\r\nHost: " + gw + "\r\n\r\n", "", true, false, 200, "hello /close"},
		{"1 MiB answer", gw, "GET http://" + gw + "/big HTTP/1.1\r\nHost: " + gw + "\r\n\r\n", "", true, false, 200, strings.Repeat("b", 1<<20)},
		{"large upload", gw, "POST http://" + gw + "/echo HTTP/1.1\r\nHost: " + gw + "\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n", big, false, false, 200, "echo " + strconv.Itoa(len(big)) + ": " + big},
		{"chunked upload", gw, "POST http://" + gw + "/echo HTTP/1.1\r\nHost: " + gw + "\r\nTransfer-Encoding: chunked\r\n\r\n", "2\r\nhi\r\n0\r\n\r\n", false, false, 200, "echo 2: hi"},
		{"non-gateway", other, "GET http://" + other + "/fixed HTTP/1.1\r\nHost: " + other + "\r\nAuthorization: Basic b3du\r\n\r\n", "", true, false, 200, "fixed"},
	} {
		fast, slow := e.srv.fastServed.Load(), e.srv.fastSlowAnswers.Load()
		io.WriteString(c, tc.head+tc.body)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		method, _, _ := strings.Cut(tc.head, " ")
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.wantStatus || string(b) != tc.wantBody {
			t.Fatalf("%s: %d %q (%v), want %d %q", tc.name, resp.StatusCode, trunc(string(b)), err, tc.wantStatus, trunc(tc.wantBody))
		}
		if resp.Close || resp.Header.Get("Date") == "" {
			t.Errorf("%s: close %v, Date %q; want a kept connection and a Date", tc.name, resp.Close, resp.Header.Get("Date"))
		}
		if got := e.srv.fastServed.Load() - fast; got != map[bool]int64{true: 1}[tc.fast] {
			t.Errorf("%s: fast path served %d, want fast=%v", tc.name, got, tc.fast)
		}
		if got := e.srv.fastSlowAnswers.Load() - slow; got != map[bool]int64{true: 1}[tc.slowAnswer] {
			t.Errorf("%s: %d answers read by net/http, want %v", tc.name, got, tc.slowAnswer)
		}
	}
	// The client asks to close: the answer says so, and the proxy closes.
	io.WriteString(c, "GET http://"+gw+"/fixed HTTP/1.1\r\nHost: "+gw+"\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil || !resp.Close {
		t.Fatalf("Connection: close: %v, close %v; want an answer that closes", err, resp != nil && resp.Close)
	}
	io.Copy(io.Discard, resp.Body)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close, read %v; want EOF", err)
	}

	first := e.plainGW.requests()[0]
	if got := first.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+e.src.current() {
		t.Errorf("the gateway got Authorization %q, want only the token", got)
	}
	if first.Header.Get("Proxy-Authorization") != "" || first.Header.Get("Proxy-Connection") != "" {
		t.Errorf("hop-by-hop fields reached the gateway: %v", first.Header)
	}
	if got := first.Header.Values("X-Keep"); !slices.Equal(got, []string{"1", "2"}) || first.Host != gw {
		t.Errorf("the gateway got X-Keep %q and Host %q, want [1 2] and %s", got, first.Host, gw)
	}
	for _, r := range e.plainGW.requests() {
		if r.Header.Get("Authorization") != "Bearer "+e.src.current() {
			t.Errorf("%s %s reached the gateway without the token", r.Method, r.URI)
		}
	}
	if got := e.otherHTTP.requests()[0].Header.Get("Authorization"); got != "Basic b3du" {
		t.Errorf("the non-gateway host got Authorization %q, want the caller's own", got)
	}
	checkNoCanary(t, e.logs.String())
}

// TestFastPathDecidesEachRequest: the fast path keeps the policy's last decision on a
// connection (fastDecision), and a request for another target, or with another Host
// inside a tunnel, is decided again: the token follows each request's own target,
// on the listen port and inside an intercepted tunnel.
func TestFastPathDecidesEachRequest(t *testing.T) {
	e, ups := loopEnv(t)
	e.plainGW.handler = loopHandler(e.plainGW)
	e.otherHTTP.handler = loopHandler(e.otherHTTP)
	gw := "localhost:" + e.plainGW.port()
	other := "127.0.0.1:" + e.otherHTTP.port()
	c, br := dialProxy(t, e)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, target := range []string{gw, other, other, gw, gw, other} {
		// The same Host field every time: the target alone says where it goes.
		fmt.Fprintf(c, "GET http://%s/%d HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic b3du\r\n\r\n", target, i, gw)
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d to %s: %d %q", i, target, resp.StatusCode, body)
		}
	}
	want := map[*upstream][]string{e.plainGW: {"/0", "/3", "/4"}, e.otherHTTP: {"/1", "/2", "/5"}}
	for u, uris := range want {
		var got []string
		for _, r := range u.requests() {
			got = append(got, r.URI)
			auth := r.Header.Get("Authorization")
			if u == e.plainGW && auth != "Bearer "+e.src.current() {
				t.Errorf("gateway request %s carried Authorization %q, want the token", r.URI, auth)
			}
			if u == e.otherHTTP && auth != "Basic b3du" {
				t.Errorf("non-gateway request %s carried Authorization %q, want the caller's own", r.URI, auth)
			}
		}
		if !slices.Equal(got, uris) {
			t.Errorf("%s got %v, want %v", u.name, got, uris)
		}
	}

	u := ups["h1 upstream"]
	host := "localhost:" + u.port()
	conn, tbr := openTunnel(t, e, host)
	for i, h := range []string{host, "elsewhere.example", host, "elsewhere.example:" + u.port(), host} {
		fmt.Fprintf(conn, "GET /%d HTTP/1.1\r\nHost: %s\r\n\r\n", i, h)
		resp, body := readResponse(t, tbr, "GET")
		if want := map[bool]int{true: 200, false: 421}[h == host]; resp.StatusCode != want {
			t.Errorf("tunnel request %d with Host %s: %d %q, want %d", i, h, resp.StatusCode, body, want)
		}
	}
	var got []string
	for _, r := range u.requests() {
		got = append(got, r.URI)
		if r.Header.Get("Authorization") != "Bearer "+e.src.current() {
			t.Errorf("tunnel request %s reached the gateway without the token", r.URI)
		}
	}
	if !slices.Equal(got, []string{"/0", "/2", "/4"}) {
		t.Errorf("the tunnel's gateway got %v, want /0 /2 /4 (the misdirected ones refused)", got)
	}
	if e.srv.fastServed.Load() < 9 {
		t.Errorf("fast path served %d requests, want all 9 that reached an upstream", e.srv.fastServed.Load())
	}
	checkNoCanary(t, e.logs.String())
}

// dialProxy opens a client connection to e's proxy, closed when the test ends.
func dialProxy(t *testing.T, e *env) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}
