package proxy

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// A real client of another user (curl as nobody) gets 403 and its requests reach no
// upstream; the same curl as this user is served.
func TestAnotherUsersClientIsRefused(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs the tests as root, which this test needs to start a client as another user")
		}
		t.Skip("needs root to start a client as another user (CI runs as root)")
	}
	curlPath, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is needed (scripts/deps installs it)")
	}
	e := newEnv(t)
	curl := func(uid uint32, args ...string) (string, error) {
		cmd := exec.Command(curlPath, append([]string{"-sS", "--max-time", "10", "-x", "http://" + e.srv.Addr(), "-w", "\n%{http_code}"}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	const nobody = 65534
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
