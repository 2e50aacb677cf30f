package broker

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatepass-dev/gatepass/broker/demo"
	"github.com/gatepass-dev/gatepass/internal/peer"
	"github.com/gatepass-dev/gatepass/internal/peer/peertest"
)

// A real client of another user (curl as nobody) that knows the sign-in's state gets
// 403 from the loopback listener, and the sign-in goes on waiting; this user's browser
// then finishes it. The owner lookup is the real one (netlink sock_diag).
func TestLoginRefusesAnotherUsersCurl(t *testing.T) {
	peertest.NeedRoot(t)
	if err := peer.Probe(peer.Owner); err != nil {
		t.Fatalf("the owner lookup does not work here, so the listener would not check: %v", err)
	}
	const nobody = peertest.Nobody
	curl := func(target string) string {
		t.Helper()
		out, err := peertest.Curl(t, nobody, "-sS", "-i", "--max-time", "10", "--noproxy", "*", target).CombinedOutput()
		if err != nil {
			t.Fatalf("curl as uid %d: %v\n%s", nobody, err, out)
		}
		return string(out)
	}

	e := newEnv(t, demo.Options{})
	startURL, done := startLogin(t, e, LoginOptions{})
	au := authorizationURL(t, startURL) // asked as root: served
	state, callback := au.Query().Get("state"), au.Query().Get("redirect_uri")
	for _, target := range []string{
		callback + "?" + url.Values{"state": {state}, "code": {"4/0attackers-code"}}.Encode(),
		callback + "?" + url.Values{"state": {state}, "error": {"access_denied"}}.Encode(),
		startURL,
	} {
		out := curl(target)
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 403 ") || strings.Contains(strings.ToLower(head), "\nlocation:") ||
			!strings.Contains(body, "belongs to another user") || !strings.Contains(body, "uid 65534") {
			t.Fatalf("curl as uid %d of %s:\n%s\nwant 403 saying the sign-in belongs to another user", nobody, hostPath(target), out)
		}
		assertNoAuthParams(t, "the refusal", out, au.Query())
	}
	assertWaiting(t, e, done)

	if r := browse(t, startURL, true); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("this user's browser: %d %v:\n%s", r.status, r.err, r.body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v", err)
	}
}
