package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/internal/peer"
)

// The proxy serves only its own user's processes (and root's); tests set who "holds"
// the client's end with Options.peerOwner. peer_linux_test.go runs the real lookup and
// a real client of another user.

func withOwner(owner func(net.Conn) (uint32, error)) func(*Options) {
	return func(o *Options) { o.peerOwner = owner }
}

// ownerAfterProbe answers the start-up probe with this process's uid, then uid for
// every connection: the check is on, and clients look like uid's.
func ownerAfterProbe(uid uint32, err error) func(net.Conn) (uint32, error) {
	var probed atomic.Bool
	return func(net.Conn) (uint32, error) {
		if probed.CompareAndSwap(false, true) {
			return uint32(os.Getuid()), nil
		}
		return uid, err
	}
}

func TestProxyServesOnlyItsOwnUser(t *testing.T) {
	self := uint32(os.Getuid())
	other := self + 4242
	tests := map[string]struct {
		uid        uint32
		err        error
		refused    bool
		wantReason string
	}{
		"same user":                 {uid: self},
		"root":                      {uid: 0},
		"another user":              {uid: other, refused: true, wantReason: "the connection came from uid "},
		"socket gone before lookup": {err: peer.ErrGone, refused: true, wantReason: "could not tell which user's process connected"},
		"lookup failed":             {err: errors.New("netlink: no buffer space"), refused: true, wantReason: "could not tell which user's process connected (netlink: no buffer space)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, withOwner(ownerAfterProbe(tc.uid, tc.err)))
			for _, target := range []string{e.plainGWURL() + "/p", e.tlsGWURL() + "/t", e.otherHTTPURL() + "/o", e.otherTLSURL() + "/o"} {
				if !tc.refused {
					resp, body := get(t, e.client(), target)
					if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello from") {
						t.Fatalf("%s: %d %q, want it served", target, resp.StatusCode, body)
					}
					continue
				}
				resp, err := e.client().Get(target)
				if strings.HasPrefix(target, "https:") {
					// Go's client reports a refused CONNECT by its status text only.
					if err == nil || !strings.Contains(err.Error(), "Forbidden") {
						t.Fatalf("%s: %v, want the CONNECT refused with 403", target, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", target, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body := string(b)
				var eb errorBody
				if resp.StatusCode != http.StatusForbidden || json.Unmarshal([]byte(body), &eb) != nil || eb.Error != "other_user" ||
					!strings.Contains(eb.Reason, tc.wantReason) || resp.Header.Get("X-Gatepass-Error") != "other_user" {
					t.Fatalf("%s: %d %s %q, want 403 other_user with %q", target, resp.StatusCode, resp.Header, body, tc.wantReason)
				}
				if !strings.Contains(eb.Reason, "serves only uid ") {
					t.Errorf("reason %q does not say whose processes gatepass serves", eb.Reason)
				}
			}
			if !tc.refused {
				return
			}
			for _, u := range []*upstream{e.plainGW, e.tlsGW, e.otherHTTP, e.otherTLS} {
				if n := len(u.requests()); n != 0 {
					t.Errorf("%s received %d requests from a refused client", u.name, n)
				}
			}
			// One warning a minute for another user's connections, and one for those
			// whose owner could not be found; a client gone before the lookup is not
			// worth a warning (a debug line each).
			warnings := strings.Count(e.logs.String(), `level=WARN msg="proxy connection refused"`)
			debugs := strings.Count(e.logs.String(), `level=DEBUG msg="proxy connection refused"`)
			if gone := errors.Is(tc.err, peer.ErrGone); gone && (warnings != 0 || debugs != 4) || !gone && (warnings != 1 || debugs != 0) {
				t.Errorf("%d warnings and %d debug lines for 4 refused connections, want %s:\n%s", warnings, debugs,
					map[bool]string{true: "0 and 4", false: "1 and 0"}[gone], e.logs.String())
			}
			if strings.Contains(e.logs.String(), canaryPrefix) {
				t.Errorf("a token in the log:\n%s", e.logs.String())
			}
		})
	}
}

func TestRefusedConnectIsAnswered403(t *testing.T) {
	e := newEnv(t, withOwner(ownerAfterProbe(uint32(os.Getuid())+1, nil)))
	host := "localhost:" + e.tlsGW.port()
	out := rawRequest(t, e.srv.Addr(), "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 403 Forbidden\r\n") || !strings.Contains(out, `"error":"other_user"`) || !strings.Contains(out, "Connection: close") {
		t.Fatalf("CONNECT from another user answered:\n%s", out)
	}
	if len(e.tlsGW.requests()) != 0 {
		t.Fatal("the gateway got a request through a refused connection")
	}
}

func TestPeerCheckOffWhereTheSystemCannotTell(t *testing.T) {
	for name, tc := range map[string]struct {
		owner   func(net.Conn) (uint32, error)
		logLine string
	}{
		"unsupported system": {func(net.Conn) (uint32, error) { return 0, peer.ErrUnsupported },
			`level=INFO msg="the proxy does not check which user's process connects on this system: any local user can use it"`},
		"lookup fails": {func(net.Conn) (uint32, error) { return 0, errors.New("netlink: permission denied") },
			`level=WARN msg="the proxy cannot tell which user's process connects, so any local user can use it" why="netlink: permission denied"`},
		"lookup names someone else": {func(net.Conn) (uint32, error) { return uint32(os.Getuid()) + 7, nil },
			"was reported as uid"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, withOwner(tc.owner))
			if e.srv.peers.on {
				t.Fatal("the check is on although its probe failed")
			}
			if !strings.Contains(e.logs.String(), tc.logLine) {
				t.Errorf("start-up log lacks %q:\n%s", tc.logLine, e.logs.String())
			}
			if resp, body := get(t, e.client(), e.plainGWURL()+"/p"); resp.StatusCode != 200 || body != "hello from plain-gateway" {
				t.Fatalf("with the check off: %d %q, want served", resp.StatusCode, body)
			}
		})
	}
}

func TestRefusalLogIsRateLimitedPerUser(t *testing.T) {
	g := &peerGate{logged: map[uint32]time.Time{}}
	t0 := time.Unix(1_000_000, 0)
	steps := []struct {
		uid  uint32
		at   time.Duration
		want bool
	}{{1001, 0, true}, {1001, time.Second, false}, {1002, time.Second, true}, {1001, 59 * time.Second, false}, {1001, 61 * time.Second, true}}
	for i, s := range steps {
		if got := g.shouldLog(s.uid, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d (uid %d at %v): shouldLog = %v, want %v", i, s.uid, s.at, got, s.want)
		}
	}
}

// The gate's decision for an agent of uid 1000: itself and root are served.
func TestPeerGateDecisions(t *testing.T) {
	for _, tc := range []struct {
		uid    uint32
		err    error
		served bool
	}{{1000, nil, true}, {0, nil, true}, {1001, nil, false}, {65534, nil, false}, {0, peer.ErrGone, false}} {
		g := &peerGate{owner: func(net.Conn) (uint32, error) { return tc.uid, tc.err }, self: 1000, on: true}
		reason, _, _ := g.refusal(nil)
		if (reason == "") != tc.served {
			t.Errorf("uid %d, err %v: refusal %q, want served %v", tc.uid, tc.err, reason, tc.served)
		}
		if !tc.served && !strings.Contains(reason, "serves only uid 1000") {
			t.Errorf("uid %d: reason %q does not name whose processes are served", tc.uid, reason)
		}
	}
	off := &peerGate{owner: func(net.Conn) (uint32, error) { return 1001, nil }, self: 1000}
	if reason, _, _ := off.refusal(nil); reason != "" {
		t.Errorf("with the check off, refused: %q", reason)
	}
}

// TestCrossSitePagesGetNoToken: a browser using the proxy does not lend the token to
// other sites' pages, on the fast path's and net/http's paths, plain and intercepted;
// a page on localhost (the developer's dev server) gets it.
func TestCrossSitePagesGetNoToken(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	for _, target := range []string{e.plainGWURL() + "/x", e.tlsGWURL() + "/x"} {
		for _, hdr := range [][]string{
			{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"},
			{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image", "Referer", "https://evil.example/page"},
			{"Origin", "null"},
		} {
			resp, body := get(t, c, target, hdr...)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Gatepass-Error") != "cross_site_request" || !strings.Contains(body, "evil.example") && hdr[1] != "null" {
				t.Errorf("%s with %q: %d %q, want 403 cross_site_request", target, hdr, resp.StatusCode, body)
			}
		}
	}
	for _, u := range []*upstream{e.plainGW, e.tlsGW} {
		if n := len(u.requests()); n != 0 {
			t.Fatalf("%s got %d requests from other sites' pages", u.name, n)
		}
	}
	// The developer's dev servers, run by this user: one on 127.0.0.1 only, one on
	// every address (both loopback families).
	v4, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer v4.Close()
	all, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	portOf := func(ln net.Listener) string { _, p, _ := net.SplitHostPort(ln.Addr().String()); return p }
	for origin, want := range map[string]int{
		"http://127.0.0.1:" + portOf(v4):  200,
		"http://localhost:" + portOf(all): 200,
		"http://[::1]:" + portOf(all):     200,
		"http://localhost:" + portOf(v4):  http.StatusForbidden, // ::1 is not the developer's
		"https://localhost:" + portOf(v4): http.StatusForbidden, // the same, for an https page
	} {
		for _, target := range []string{e.plainGWURL() + "/dev", e.tlsGWURL() + "/dev"} {
			resp, body := get(t, c, target, "Origin", origin, "Sec-Fetch-Site", "cross-site")
			if resp.StatusCode != want {
				t.Fatalf("%s from a page at %s: %d %s, want %d", target, origin, resp.StatusCode, body, want)
			}
			scheme, _, _ := strings.Cut(origin, "://")
			if want == http.StatusForbidden && !strings.Contains(body, scheme+"://127.0.0.1:PORT") {
				t.Errorf("the refusal of a localhost page does not say to use the address, with the page's scheme: %s", body)
			}
		}
	}
	// A loopback port nobody listens on is no page of this user's.
	if resp, _ := get(t, c, e.plainGWURL()+"/gone", "Origin", "http://127.0.0.1:9", "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a page on a loopback port nobody serves: %d, want 403", resp.StatusCode)
	}
	for _, u := range []*upstream{e.plainGW, e.tlsGW} {
		if r := last(t, u); r.URI != "/dev" || !strings.Contains(r.Header.Get("Authorization"), canaryPrefix) {
			t.Errorf("%s got %s, want /dev with the token", u.name, r)
		}
	}
	if strings.Contains(e.logs.String(), canaryPrefix) {
		t.Error("a token in the log")
	}
}

// TestConnectionFromOutsideTheSystemIsServed: a client that is no socket of this
// machine (WSL2's mirrored networking) is served, as where the system cannot tell,
// and said once in the log.
func TestConnectionFromOutsideTheSystemIsServed(t *testing.T) {
	e := newEnv(t, withOwner(ownerAfterProbe(0, peer.ErrExternal)))
	for range 2 {
		if resp, body := get(t, e.client(), e.plainGWURL()+"/p"); resp.StatusCode != 200 || body != "hello from plain-gateway" {
			t.Fatalf("%d %q, want served", resp.StatusCode, body)
		}
		e.client().CloseIdleConnections()
	}
	if n := strings.Count(e.logs.String(), "proxy connection from outside this system served"); n != 1 {
		t.Errorf("%d log lines, want 1:\n%s", n, e.logs.String())
	}
}

// TestLoopbackUpstreamWithoutListener: a loopback gateway no listener takes (a port
// forwarded by Docker's or podman's DNAT rules, which are root's) is served; a lookup
// that fails is not.
func TestLoopbackUpstreamWithoutListener(t *testing.T) {
	for name, tc := range map[string]struct {
		err    error
		status int
	}{
		"no socket takes it (DNAT)": {peer.ErrForwarded, http.StatusOK},
		"a closed server end":       {fmt.Errorf("%w (no listener on port 8080)", peer.ErrGone), http.StatusBadGateway},
		"lookup failed":             {errors.New("netlink sock_diag: no buffer space"), http.StatusBadGateway},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				o.serverOwner = func(net.Conn) (uint32, error) { return 0, tc.err }
			})
			resp, body := get(t, e.client(), e.plainGWURL()+"/p")
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %q, want %d", resp.StatusCode, body, tc.status)
			}
		})
	}
}

// TestRefusalsAreBounded: another account that opens many connections and sends
// nothing holds at most maxRefusing refusals at once; beyond that a connection is
// closed without an answer, and the proxy still serves its user.
func TestRefusalsAreBounded(t *testing.T) {
	var probed atomic.Bool
	other := uint32(os.Getuid()) + 4242
	e := newEnv(t, withOwner(func(c net.Conn) (uint32, error) {
		if probed.CompareAndSwap(false, true) {
			return uint32(os.Getuid()), nil
		}
		if strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.2:") {
			return other, nil // the flood comes from 127.0.0.2
		}
		return uint32(os.Getuid()), nil
	}))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range maxRefusing {
		c, err := d.Dial("tcp", e.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	waitFor(t, func() bool { return len(e.srv.peers.refusing) == maxRefusing }, "every refusal slot taken")
	c, err := d.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second)) // far less than a held refusal's 2 s
	c.Write([]byte("GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n"))
	if b, err := io.ReadAll(c); len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("connection %d: read %q, %v; want it closed without an answer", maxRefusing+1, b, err)
	}
	if resp, body := get(t, e.client(), e.plainGWURL()+"/p"); resp.StatusCode != 200 || body != "hello from plain-gateway" {
		t.Fatalf("this user during the flood: %d %q", resp.StatusCode, body)
	}
}
