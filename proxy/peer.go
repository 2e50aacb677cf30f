package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatepass-dev/gatepass/internal/peer"
)

// The proxy adds the signed-in developer's token to requests for the gateways, so
// whoever can reach its port acts as that developer. Listening on loopback keeps the
// network out, but not the machine's other users: any local account (a shared build
// host, a service account, another developer on the same desktop) can connect to
// 127.0.0.1. Where the operating system says who holds the other end of a loopback
// connection (Linux: the kernel's socket table, through netlink sock_diag), the proxy
// serves only its own user's processes and root's (root can read the agent's memory
// and keychain anyway, and a container started with --network host runs as root).
// Every other connection is answered 403 other_user, its request head read and dropped
// (never parsed or passed on). Where it cannot tell, the proxy says so once, at start,
// and serves as before.

// maxRefusing bounds the refusals answered at once, each holding its connection for up
// to the 2 s its request head may take and lingerTime.
const maxRefusing = 64

// peerGate decides, per accepted connection, whether its client may use the proxy.
type peerGate struct {
	owner       func(net.Conn) (uint32, error) // who holds the other end of a loopback connection
	serverOwner func(net.Conn) (uint32, error) // who runs the loopback server a dialled connection reached
	// listenerOwner: who listens on a loopback port (peer.ListenerOwner; tests replace it).
	listenerOwner func(net.IP, int) (uint32, error)
	self          uint32
	on            bool  // false: the check does not work here, every connection is served
	off           error // why it is off

	// refusing holds a token for each refusal being answered (refusePeer).
	refusing chan struct{}
	// log, when set, says once that a connection from outside the system was served.
	log      func(msg string, args ...any)
	external atomic.Bool

	mu     sync.Mutex
	logged map[uint32]time.Time // refusals logged, per uid (at most one line a minute each)
}

// newPeerGate probes owner on a loopback connection of its own: the check is on only
// when that finds this process's user.
func newPeerGate(owner, serverOwner func(net.Conn) (uint32, error)) *peerGate {
	g := &peerGate{owner: owner, serverOwner: serverOwner, listenerOwner: peer.ListenerOwner, self: peer.Self(), logged: map[uint32]time.Time{},
		refusing: make(chan struct{}, maxRefusing)}
	g.off = peer.Probe(owner)
	g.on = g.off == nil
	return g
}

// trusted reports whether a process of uid may act for the gate's user: that user or
// root (peer.Trusted, for g.self).
func (g *peerGate) trusted(uid uint32) bool { return uid == g.self || uid == 0 }

// unknownPeer and gonePeer stand for the client's uid in a refusal whose owner could
// not be found (known false): the lookup failed, or the client's socket was already
// closed (a port check such as `nc -z`, a client that gave up), so nobody reads the answer.
const (
	unknownPeer = ^uint32(0)
	gonePeer    = ^uint32(0) - 1
)

// refusal says why c's client may not use the proxy; "" when it may.
func (g *peerGate) refusal(c net.Conn) (reason string, uid uint32, known bool) {
	if !g.on {
		return "", 0, false
	}
	uid, err := g.owner(c)
	if errors.Is(err, peer.ErrExternal) {
		if g.external.CompareAndSwap(false, true) && g.log != nil {
			g.log("proxy connection from outside this system served (WSL2 mirrored networking or a VM's port forward?): nobody here owns it, so it cannot be checked", "from", c.RemoteAddr().String())
		}
		return "", 0, false
	}
	if err != nil {
		uid = unknownPeer
		if errors.Is(err, peer.ErrGone) {
			uid = gonePeer
		}
		return "could not tell which user's process connected (" + err.Error() + "); gatepass serves only " + peer.UserName(g.self) + "'s processes", uid, false
	}
	if g.trusted(uid) {
		return "", uid, true
	}
	return "this gatepass serves only " + peer.UserName(g.self) + "'s processes; the connection came from " + peer.UserName(uid), uid, true
}

// foreignUpstreamError: a loopback upstream is served by a process of another user.
type foreignUpstreamError struct {
	owner string // "uid 1001 (bob)", or why it is unknown
}

func (e *foreignUpstreamError) Error() string {
	return "the program listening there runs as " + e.owner + ", not as this user or root, so gatepass sends it nothing"
}

// checkUpstream vets a connection the proxy opened to an upstream before anything is
// written to it: a server on loopback must be run by this user or root. Otherwise
// another account could listen on a local gateway's port while the developer's own
// server is down, and receive the token (in the clear, for a plain_http gateway) and
// answer in its name. Servers on other hosts are not this machine's users' business.
func (g *peerGate) checkUpstream(c net.Conn) error {
	return g.vetServer(c, g.trusted, "")
}

// vetServer vets c, a connection the proxy opened, when it reaches a loopback server:
// the uid whose socket takes it must pass ok; a port forwarded elsewhere by a root rule
// (Docker or podman DNAT, a hostPort) passes, since nobody else on this machine
// receives what is sent. whose is added to the refusal's owner ("another person's
// account").
func (g *peerGate) vetServer(c net.Conn, ok func(uint32) bool, whose string) error {
	if !g.on {
		return nil
	}
	ra, isTCP := c.RemoteAddr().(*net.TCPAddr)
	if !isTCP || !ra.IP.IsLoopback() {
		return nil
	}
	uid, err := g.serverOwner(c)
	switch {
	case errors.Is(err, peer.ErrForwarded):
		return nil
	case err != nil:
		return &foreignUpstreamError{owner: "a user gatepass could not tell (" + err.Error() + ")"}
	case ok(uid):
		return nil
	}
	return &foreignUpstreamError{owner: peer.UserName(uid) + whose}
}

// localPage reports whether a web page on loopback host:port is served by this user
// or root (RequestInfo.LocalPage): the listener on that port that takes connections to
// host. A name ("localhost") needs this user's or root's listener on both 127.0.0.1 and
// ::1 (or one wildcard that takes both): a browser may have loaded the page from either,
// and another user could serve one family while the developer's server has the other.
// None there, or one of another user, is not this user's page. Where the check is off,
// every loopback page is.
func (g *peerGate) localPage(host, port string) bool {
	if !g.on {
		return true
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return false
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	}
	for _, ip := range ips {
		uid, err := g.listenerOwner(ip, p)
		if err != nil || !g.trusted(uid) {
			return false
		}
	}
	return true
}

// checkProxy vets a connection to the corporate upstream proxy on loopback before the
// proxy's credentials (Proxy-Authorization) and the gateways' names go to it: it must
// be run by this user, root, or a system account (cntlm, px run as one), not by another
// person's account, which could hold its port while the real one is down.
func (g *peerGate) checkProxy(c net.Conn) error {
	return g.vetServer(c, func(uid uint32) bool { return g.trusted(uid) || !peer.RegularUser(uid) }, ", another person's account")
}

// shouldLog reports whether a refusal of uid is logged now: the first, then at most
// one a minute, so another user's client in a retry loop cannot flood the log.
func (g *peerGate) shouldLog(uid uint32, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.logged[uid]; ok && now.Sub(t) < time.Minute {
		return false
	}
	if len(g.logged) > 1024 {
		clear(g.logged)
	}
	g.logged[uid] = now
	return true
}

// refusePeer answers a connection whose client may not use the proxy, after its
// request head (read and dropped), and closes it once the client has had time to read
// the answer. At most maxRefusing connections are answered at once; beyond that (a
// flood from another account) a connection is closed without an answer.
func (s *Server) refusePeer(c net.Conn, reason string, uid uint32, known bool) {
	select {
	case s.peers.refusing <- struct{}{}:
		defer func() { <-s.peers.refusing }()
	default:
		c.Close()
		return
	}
	switch {
	case !known && uid == gonePeer:
		// Not worth a warning: the client left before it could be checked.
		s.log.Debug("proxy connection refused", "from", c.RemoteAddr().String(), "reason", reason)
	case s.peers.shouldLog(uid, time.Now()): // once a minute per user (all unknowns as one)
		s.log.Warn("proxy connection refused", "from", c.RemoteAddr().String(), "reason", reason)
	}
	// The answer follows the client's request head (read and dropped, never parsed
	// or passed on): an answer that came first would reach an HTTP client as bytes on
	// an idle connection, which Go's client, for one, reports as an error instead.
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	var tail []byte
	for read := 0; read < maxHeaderBytes; {
		n, err := c.Read(buf)
		read += n
		tail = append(tail, buf[:n]...)
		if bytes.Contains(tail, []byte("\r\n\r\n")) || err != nil {
			break
		}
		tail = tail[max(0, len(tail)-3):]
	}
	tc := &loopConn{s: s, c: c, bw: bufio.NewWriterSize(c, 1024)}
	c.SetWriteDeadline(time.Now().Add(lingerTime))
	d := refuse(http.StatusForbidden, "other_user", reason)
	d.Hint = "each user signs in with a gatepass of their own: run it as that user, on a port of its own (gatepass proxy --listen 127.0.0.1:8788)"
	if !known {
		d.Hint = "retry; if it persists, run gatepass proxy in the foreground to see its log"
	}
	tc.writeAndClose(d)
	tc.lingerClose()
}

// CheckPeers says whether the proxy can tell which user's process connects (for
// gatepass doctor): what it serves when it can; an error when it should and cannot.
func CheckPeers() (string, error) {
	g := newPeerGate(peer.Owner, peer.ServerOwner)
	switch {
	case g.on:
		if g.self == 0 {
			return "only root's processes may use the proxy", nil
		}
		return "only " + peer.UserName(g.self) + "'s processes (and root's) may use the proxy", nil
	case errors.Is(g.off, peer.ErrUnsupported):
		return "not checked on this system: any local user's process may use the proxy", nil
	default:
		return "", fmt.Errorf("cannot tell which user's process connects to the proxy (%v), so any local user may use it", g.off)
	}
}
