package proxy

import (
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatepass-dev/gatepass/internal/peer"
	"github.com/gatepass-dev/gatepass/internal/peer/peertest"
)

// A real client of another user (curl as nobody) gets 403 and its requests reach no
// upstream; the same curl as this user is served.
func TestAnotherUsersClientIsRefused(t *testing.T) {
	peertest.NeedRoot(t)
	e := newEnv(t)
	curl := func(uid int, args ...string) (string, error) {
		out, err := peertest.Curl(t, uid, append([]string{"-sS", "--max-time", "10", "-x", "http://" + e.srv.Addr(), "-w", "\n%{http_code}"}, args...)...).CombinedOutput()
		return string(out), err
	}
	const nobody = peertest.Nobody
	out, err := curl(nobody, e.plainGWURL()+"/from-nobody")
	if err != nil || !strings.HasSuffix(out, "\n403") || !strings.Contains(out, `"error":"other_user"`) || !strings.Contains(out, "uid 65534") {
		t.Fatalf("curl as uid %d: %v\n%s\nwant 403 other_user naming uid 65534", nobody, err, out)
	}
	out, err = curl(nobody, "--cacert", e.caPEMPath, e.tlsGWURL()+"/from-nobody")
	if err == nil || !strings.Contains(out, "403") {
		t.Fatalf("curl as uid %d through CONNECT: %v\n%s\nwant the CONNECT refused with 403", nobody, err, out)
	}
	for _, u := range []*upstream{e.plainGW, e.tlsGW} {
		if n := len(u.requests()); n != 0 {
			t.Fatalf("%s got %d requests from another user's client", u.name, n)
		}
	}
	if !strings.Contains(e.logs.String(), "proxy connection refused") {
		t.Errorf("no log line for the refused connections:\n%s", e.logs.String())
	}
	out, err = curl(0, e.plainGWURL()+"/from-root")
	if err != nil || !strings.HasSuffix(out, "\n200") {
		t.Fatalf("curl as this user (root): %v\n%s", err, out)
	}
	if r := last(t, e.plainGW); r.URI != "/from-root" || !strings.Contains(r.Header.Get("Authorization"), canaryPrefix) {
		t.Fatalf("the gateway got %s, want /from-root with the token", r)
	}
}

// A local gateway's port held by another user's program (the developer's own server
// is down): the proxy sends it nothing, token or otherwise, on the pooled path and on
// net/http's (an upgrade), and says why.
func TestGatewayPortHeldByAnotherUser(t *testing.T) {
	peertest.NeedRoot(t)
	ln, err := peertest.ListenAs(peertest.Nobody, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		io.WriteString(w, "squatter")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e := newEnv(t)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	e.src.add("127.0.0.1:"+port, Gateway{Profile: "work", PlainHTTP: true})
	for _, hdr := range [][]string{nil, {"Connection", "Upgrade", "Upgrade", "websocket"}} {
		resp, body := get(t, e.client(), "http://127.0.0.1:"+port+"/x", hdr...)
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Gatepass-Error") != "upstream_other_user" || !strings.Contains(body, "uid 65534") {
			t.Errorf("with %q: %d %q, want 502 upstream_other_user naming uid 65534", hdr, resp.StatusCode, body)
		}
	}
	if n := got.Load(); n != 0 {
		t.Fatalf("another user's server got %d requests", n)
	}
	// The same port run by this user is served.
	if resp, body := get(t, e.client(), e.plainGWURL()+"/mine"); resp.StatusCode != 200 || body != "hello from plain-gateway" {
		t.Fatalf("this user's gateway: %d %q", resp.StatusCode, body)
	}
}

// A page served on loopback by another user's program is another site: a fetch() from
// it to a gateway gets no token, though the developer's browser sends it.
func TestLoopbackPageOfAnotherUserGetsNoToken(t *testing.T) {
	peertest.NeedRoot(t)
	ln, err := peertest.ListenAs(peertest.Nobody, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := newEnv(t)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, origin := range []string{"http://127.0.0.1:" + port, "http://localhost:" + port} {
		resp, body := get(t, e.client(), e.tlsGWURL()+"/x", "Origin", origin, "Sec-Fetch-Site", "cross-site")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Gatepass-Error") != "cross_site_request" {
			t.Errorf("a page of uid %d's server at %s: %d %q, want 403 cross_site_request", peertest.Nobody, origin, resp.StatusCode, body)
		}
	}
	if n := len(e.tlsGW.requests()); n != 0 {
		t.Fatalf("the gateway got %d requests from another user's page", n)
	}
}

// A corporate proxy daemon on loopback run by a service account (cntlm, px; nobody
// here) is not an upstream the token goes to in the clear (it tunnels the gateway's
// TLS): requests go through it. One run by another person's account (uid 1234, within
// login.defs' UID_MIN..UID_MAX) gets nothing, not even the proxy's credentials.
func TestUpstreamProxyOfAServiceAccount(t *testing.T) {
	peertest.NeedRoot(t)
	for uid, want := range map[int]int{peertest.Nobody: http.StatusOK, 1234: http.StatusBadGateway} {
		t.Run(strconv.Itoa(uid), func(t *testing.T) {
			corpPKI := newNamedPKI(t, []string{"gw.corp.test"}, nil)
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(corpPKI.pem)
			corp := &corpProxy{routes: map[string]string{}, conns: map[net.Conn]struct{}{}}
			corp.tr = newCorpProxy(t).tr
			ln, err := peertest.ListenAs(uid, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var reached atomic.Int32
			corp.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reached.Add(1)
				corp.ServeHTTP(w, r)
			}))
			corp.Listener.Close()
			corp.Listener = ln
			corp.Start()
			defer corp.Close()
			remote := newUpstream(t, "tls-remote-gateway", corpPKI, false)
			corp.addRoute("gw.corp.test:443", remote.Listener.Addr().String())
			src := newFakeSource()
			src.add("gw.corp.test:443", Gateway{Profile: "work"})
			up, _ := url.Parse("http://" + ln.Addr().String())
			e := newCorpEnv(t, src, []string{"gw.corp.test"}, roots, up, corpPKI.pem)
			resp, body := get(t, e.client(), "https://gw.corp.test/a")
			if resp.StatusCode != want {
				t.Fatalf("through uid %d's corporate proxy: %d %s %q, want %d", uid, resp.StatusCode, resp.Header.Get("X-Gatepass-Error"), body, want)
			}
			if want != http.StatusOK && reached.Load() != 0 {
				t.Fatalf("uid %d's proxy got %d requests", uid, reached.Load())
			}
		})
	}
}

// Another user who accepts the proxy's connection to a loopback gateway and closes
// the listener at once leaves no listener to look up, but the accepted socket is
// theirs: the connection is refused, not taken for a forwarded port (found by review:
// about one dial in six handed over the token).
func TestUpstreamOfAClosedForeignListenerIsRefused(t *testing.T) {
	peertest.NeedRoot(t)
	ln, err := peertest.ListenAs(peertest.Nobody, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := peertest.AcceptAs(peertest.Nobody, ln)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ln.Close()
	g := newPeerGate(peer.Owner, peer.ServerOwner)
	var fe *foreignUpstreamError
	if err := g.checkUpstream(c); !errors.As(err, &fe) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("checkUpstream = %v, want it refused as uid 65534's", err)
	}
}

// TestCheckPeersNamesTheUser: doctor's users line names whose processes the proxy
// serves, without "(and root's)" when that user is root.
func TestCheckPeersNamesTheUser(t *testing.T) {
	msg, err := CheckPeers()
	if err != nil {
		t.Skipf("no peer check here: %v", err)
	}
	if os.Getuid() == 0 {
		if msg != "only root's processes may use the proxy" {
			t.Errorf("as root: %q", msg)
		}
	} else if !strings.Contains(msg, "'s processes (and root's) may use the proxy") {
		t.Errorf("as uid %d: %q", os.Getuid(), msg)
	}
}
