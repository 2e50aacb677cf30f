//go:build unix

package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testDialTimeout replaces the pool's 10s dial timeout in these tests.
const testDialTimeout = 50 * time.Millisecond

// blackholePort returns a loopback port where a TCP dial times out: a listener
// with a backlog of 0 that never accepts, its accept queue already full, so the
// kernel drops every further SYN. It listens on 127.0.0.1 and, where it can,
// on [::1] with the same port, so that "localhost" times out whichever address
// it resolves to first. The test is skipped where this does not make a dial
// time out.
func blackholePort(t *testing.T) string {
	t.Helper()
	port, err := fullListener(t, syscall.AF_INET, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	if err != nil {
		t.Skipf("cannot make a full loopback listener: %v", err)
	}
	fullListener(t, syscall.AF_INET6, &syscall.SockaddrInet6{Addr: [16]byte{15: 1}, Port: port}) // best effort
	p := strconv.Itoa(port)
	start := time.Now()
	c, err := (&net.Dialer{Timeout: testDialTimeout}).Dial("tcp", "localhost:"+p)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		if c != nil {
			c.Close()
		}
		t.Skipf("a dial to a full listener does not time out here (err %v after %v)", err, time.Since(start))
	}
	return p
}

// fullListener listens at sa with a backlog of 0 and fills its accept queue; it
// returns the port. Everything is closed when the test ends.
func fullListener(t *testing.T, family int, sa syscall.Sockaddr) (int, error) {
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM, 0)
	if err != nil {
		return 0, err
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, sa); err != nil {
		return 0, err
	}
	if err := syscall.Listen(fd, 0); err != nil {
		return 0, err
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	var addr string
	var port int
	switch a := got.(type) {
	case *syscall.SockaddrInet4:
		port, addr = a.Port, net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port))
	case *syscall.SockaddrInet6:
		port, addr = a.Port, net.JoinHostPort("::1", strconv.Itoa(a.Port))
	default:
		return 0, fmt.Errorf("unexpected address %T", got)
	}
	// Connections the kernel completes go to the accept queue, which nobody reads;
	// once it is full the next dial times out.
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, testDialTimeout)
		if err != nil {
			return port, nil
		}
		t.Cleanup(func() { c.Close() })
	}
	return 0, fmt.Errorf("%s accepted 16 connections with a backlog of 0", addr)
}

// TestUpstreamDialTimeout: a gateway whose dial times out gets a 504 naming the
// upstream and the timeout, on every path of the listen port and inside an
// intercepted tunnel, with no token in the answer, the log or OnRequest.
func TestUpstreamDialTimeout(t *testing.T) {
	e := newEnv(t)
	port := blackholePort(t)
	gw := "localhost:" + port
	// The hot path dials with the pool's dialer, http.Transport with its own:
	// both time out after testDialTimeout instead of 10s.
	e.srv.h1.dialer = &net.Dialer{Timeout: testDialTimeout}
	e.srv.transport.DialContext = (&net.Dialer{Timeout: testDialTimeout}).DialContext
	c := e.client()

	tests := []struct {
		name, url string
		hdr       []string
		body      string
		plain     bool // gateway listed in plain_http
		// The path each case covers: served by the fast path (fast.go), and
		// handed to the listen port's http.Server.
		fast, handed bool
	}{
		{name: "listen port, fast path", url: "http://" + gw + "/fast", plain: true, fast: true},
		// The fast path declines TE: the loop's net/http path (h1Pool) carries it.
		{name: "listen port, net/http path", url: "http://" + gw + "/slow", hdr: []string{"Te", "trailers"}, plain: true},
		// Expect: 100-continue goes to the http.Server, and through http.Transport.
		{name: "listen port, http.Transport", url: "http://" + gw + "/expect", hdr: []string{"Expect", "100-continue"}, body: "upload", plain: true, handed: true},
		// The CONNECT is handed over; the request inside takes the fast path.
		{name: "intercepted TLS", url: "https://" + gw + "/tls", fast: true, handed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.src.add(gw, Gateway{Profile: "work", PlainHTTP: tc.plain})
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(http.MethodPost, tc.url, body)
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			fast0, handed0 := e.srv.fastServed.Load(), e.srv.handedOverListen.Load()
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if fast := e.srv.fastServed.Load() > fast0; fast != tc.fast {
				t.Errorf("served by the fast path: %v, want %v: the case does not cover its path", fast, tc.fast)
			}
			if handed := e.srv.handedOverListen.Load() > handed0; handed != tc.handed {
				t.Errorf("handed to the http.Server: %v, want %v: the case does not cover its path", handed, tc.handed)
			}
			dump, _ := httputil.DumpResponse(resp, false)
			if resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("status %d, want 504 (after %v):\n%s%s", resp.StatusCode, took, dump, b)
			}
			if took > 5*time.Second {
				t.Errorf("the 504 took %v: the test dial timeout was not used", took)
			}
			var eb errorBody
			if err := json.Unmarshal(b, &eb); err != nil {
				t.Fatalf("body is not JSON: %v: %q", err, b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if resp.Header.Get("X-Gatepass-Error") != "upstream_unreachable" || eb.Error != "upstream_unreachable" {
				t.Errorf("error code %q / %q, want upstream_unreachable", resp.Header.Get("X-Gatepass-Error"), eb.Error)
			}
			// The body names the upstream and says the dial timed out.
			if eb.Host != gw || eb.Profile != "work" {
				t.Errorf("body names host %q profile %q, want %q %q", eb.Host, eb.Profile, gw, "work")
			}
			if !strings.Contains(eb.Reason, "upstream "+gw) || !strings.Contains(eb.Reason, "timeout") {
				t.Errorf("reason %q does not name the upstream and the timeout", eb.Reason)
			}
			if !strings.Contains(eb.Hint, "did not answer in time") || !strings.Contains(eb.Hint, "retry") {
				t.Errorf("hint %q does not say what to do about a timeout", eb.Hint)
			}
			tok := e.src.current()
			if tok == "" {
				t.Fatal("no token was issued: the leak checks prove nothing")
			}
			if strings.Contains(string(dump)+string(b), canaryPrefix) {
				t.Errorf("TOKEN LEAK in the 504:\n%s%s", dump, b)
			}
			path := req.URL.Path
			waitFor(t, func() bool {
				for _, en := range e.entries.all() {
					if en.Path == path {
						return true
					}
				}
				return false
			}, "the request logged")
			for _, en := range e.entries.all() {
				if en.Path == path && (en.Status != http.StatusGatewayTimeout || !strings.Contains(en.Err, "timeout")) {
					t.Errorf("OnRequest entry %+v, want status 504 and the timeout", en)
				}
			}
		})
	}
	if logs := e.logs.String(); strings.Contains(logs, canaryPrefix) {
		t.Errorf("TOKEN LEAK in the log:\n%s", logs)
	} else if !strings.Contains(logs, "status=504") {
		t.Errorf("no 504 in the log:\n%s", logs)
	}
	for _, en := range e.entries.all() {
		if strings.Contains(fmt.Sprintf("%+v", en), canaryPrefix) {
			t.Errorf("TOKEN LEAK in OnRequest entry %+v", en)
		}
	}
}
