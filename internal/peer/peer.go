// Package peer tells which user's process holds the other end of a loopback TCP
// connection, where the operating system says (Linux: netlink sock_diag). The proxy
// uses it to serve only its own user's processes, the sign-in's loopback callback to
// take the redirect only from them, and the proxy's dial of a plain-HTTP loopback
// gateway to send a token only to a server of that user.
package peer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrUnsupported: this system gives no way to tell who connected.
var ErrUnsupported = errors.New("this system does not say which user holds a loopback connection")

// ErrGone: the other end's socket has no owner any more (closed by its process before
// it was looked up), or was not found.
var ErrGone = errors.New("the socket at the other end was closed or not found")

// ErrExternal: the other end of a loopback connection is not a socket of this kernel
// at all, while this end is established: a peer outside this system forwarded onto its
// loopback (WSL2's mirrored networking, for one, hands Windows' connections to the
// Linux VM this way). Nobody here owns it, so nobody can be told; callers treat it as
// a system that cannot tell, not as a closed socket.
var ErrExternal = errors.New("the connection comes from outside this system (its other end is not one of this machine's sockets)")

// ErrForwarded: a connection this process opened to a loopback address is taken by no
// socket of this machine: no listener, and no server end in the table. A root rule
// forwards it elsewhere (Docker's or podman's DNAT into a container).
var ErrForwarded = errors.New("no socket of this machine takes the connection (a port forwarded elsewhere, as Docker's DNAT does)")

// Self is this process's user ID.
func Self() uint32 { return uint32(os.Getuid()) }

// Trusted reports whether a process of uid may act for this process's user: the
// user itself, or root (which can read the user's keychain and memory anyway).
func Trusted(uid uint32) bool { return uid == Self() || uid == 0 }

// RegularUser reports whether uid is a person's account rather than a system one:
// within UID_MIN..UID_MAX of /etc/login.defs (1000..60000 where it does not say).
func RegularUser(uid uint32) bool {
	lo, hi := loginUIDRange()
	return uid >= lo && uid <= hi
}

var loginUIDRange = sync.OnceValues(func() (uint32, uint32) {
	lo, hi := uint32(1000), uint32(60000)
	b, err := os.ReadFile("/etc/login.defs")
	if err != nil {
		return lo, hi
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			continue
		}
		switch f[0] {
		case "UID_MIN":
			lo = uint32(n)
		case "UID_MAX":
			hi = uint32(n)
		}
	}
	return lo, hi
})

// Probe reports whether owner works here: it looks up a loopback connection this
// process makes to itself, which must come out as this process's user. The error
// says why not (wrapping ErrUnsupported where the system cannot tell at all).
func Probe(owner func(net.Conn) (uint32, error)) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if ln, err = net.Listen("tcp", "[::1]:0"); err != nil {
			return fmt.Errorf("no loopback address to probe on: %w", err)
		}
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
	var a net.Conn
	for {
		if a, err = ln.Accept(); err != nil {
			return err
		}
		if a.RemoteAddr().String() == c.LocalAddr().String() {
			break
		}
		// Someone else's connection to the probe's port (another user racing it to
		// switch the check off): not the one to look up.
		a.Close()
	}
	defer a.Close()
	uid, err := owner(a)
	if err != nil {
		return err
	}
	if uid != Self() {
		return fmt.Errorf("a connection of this process was reported as uid %d, not %d", uid, Self())
	}
	return nil
}

// UserName is "uid 1001 (alice)", or "uid 1001" when the account has no name here.
func UserName(uid uint32) string {
	s := "uid " + strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil && u.Username != "" {
		s += " (" + u.Username + ")"
	}
	return s
}
