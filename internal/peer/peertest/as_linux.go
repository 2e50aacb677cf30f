package peertest

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Nobody is the uid the tests play another user with.
const Nobody = 65534

// NeedRoot skips t unless it runs as root, which making another user's sockets and
// processes takes; in CI (which runs the tests as root) it fails instead, so that
// the test cannot quietly stop running.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Getuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI runs the tests as root, which this test needs to act as another user")
	}
	t.Skip("needs root to act as another user (CI runs as root)")
}

// Curl returns an exec.Cmd running curl with args as uid (and gid uid), from /, with
// an environment of its own (no *_proxy variables, a HOME it cannot write).
func Curl(t testing.TB, uid int, args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is needed (scripts/deps installs it)")
	}
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return cmd
}
