package proxy

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

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
