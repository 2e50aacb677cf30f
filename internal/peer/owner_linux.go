package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The kernel's socket table answers through netlink sock_diag (SOCK_DIAG_BY_FAMILY):
// a request is struct nlmsghdr then struct inet_diag_req_v2; each answer is struct
// nlmsghdr then struct inet_diag_msg. Both are laid out by hand here (x/sys/unix has
// the constants, not the structs).
//
// github.com/vishvananda/netlink's SocketGet asks for a dump filtered by port, which
// walks the whole connection hash table: 3-8 ms a lookup here against about 20 µs for
// the exact lookup Owner makes.

// TCP states as struct inet_diag_msg gives them (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpListen      = 10
)

// diagMsg is what is read of one struct inet_diag_msg.
type diagMsg struct {
	family, state    uint8
	srcPort, dstPort int
	src, dst         net.IP
	uid, inode       uint32
}

// Owner returns the user ID of the process holding the other end of c, a TCP
// connection accepted on a loopback address: the client's socket is the one whose
// local address is c's remote one, found by one exact lookup of the four addresses
// and ports (no dump of the table). A socket its process has closed has no inode and
// no owner any more; that is ErrGone, never a uid.
func Owner(c net.Conn) (uint32, error) {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, ErrUnsupported
	}
	family := uint8(unix.AF_INET6)
	if remote.IP.To4() != nil && local.IP.To4() != nil {
		family = unix.AF_INET
	}
	msgs, err := diagQuery(diagRequest(family, 0xffffffff, remote, local, false))
	if errors.Is(err, ErrGone) && externalPeers() && externalPeer(outsideLook(family, local, remote), func() { time.Sleep(settle) }) {
		return 0, ErrExternal
	}
	if err != nil {
		return 0, err
	}
	if len(msgs) != 1 {
		return 0, ErrGone
	}
	m := msgs[0]
	if m.srcPort != remote.Port || m.dstPort != local.Port {
		return 0, ErrGone // another socket: never take its owner for this one's
	}
	if m.inode == 0 {
		return 0, ErrGone
	}
	return m.uid, nil
}

// externalPeers reports whether loopback connections may come from outside this
// kernel: on WSL2, whose mirrored networking hands Windows' connections to the Linux
// VM that way. Elsewhere a missing client socket is always a gone one (a test may
// say otherwise).
var externalPeers = sync.OnceValue(func() bool {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return bytes.Contains(bytes.ToLower(b), []byte("microsoft"))
})

// externalPeer reports whether the client of this end (local to remote), missing from
// the table, is outside this kernel rather than gone: it is still missing and this end
// still established a moment later. A local client's socket is in the table from its
// connect() until after its close() (as TIME_WAIT), except after a reset, which
// destroys it at once and ends this end too, but only once this side has processed the
// reset: the second look, after settle, does not mistake that moment for an outside
// client. look is one look; wait sleeps between the two (both replaced in tests).
func externalPeer(look func() bool, wait func()) bool {
	if !look() {
		return false
	}
	wait()
	return look()
}

// outsideLook is externalPeer's look at a real connection: the client is missing and
// this end is established.
func outsideLook(family uint8, local, remote *net.TCPAddr) func() bool {
	return func() bool {
		if !establishedHere(family, local, remote) {
			return false
		}
		_, err := diagQuery(diagRequest(family, 0xffffffff, remote, local, false))
		return errors.Is(err, ErrGone)
	}
}

// settle is how long externalPeer waits before its second look: far longer than a
// reset takes to reach this side of a loopback connection.
const settle = 20 * time.Millisecond

// establishedHere reports whether this process's end of a connection (local to
// remote) is an established socket of this kernel.
func establishedHere(family uint8, local, remote *net.TCPAddr) bool {
	msgs, err := diagQuery(diagRequest(family, 0xffffffff, local, remote, false))
	return err == nil && len(msgs) == 1 && msgs[0].state == tcpEstablished && msgs[0].inode != 0
}

// ServerOwner returns the user ID of the process whose listening socket took c, a
// connection this process opened to a loopback address. It asks for the listeners
// on c's remote port (a dump of the small listening table only, in both families:
// an IPv6 wildcard listener takes IPv4 connections too) that would accept c's remote
// address, rather than for the server's end of c, which until the server accepts it
// has no owner the kernel reports. Several such listeners of different users (never
// the case with SO_REUSEPORT, which requires one user) give the first one that is
// neither this user nor root.
//
// Without a listener, the server's end of c itself says who holds it: a process that
// accepted it and closed its listener (another user can, to take a gateway's token
// while passing this check) owns it; only a server end missing from the table
// altogether is ErrForwarded.
func ServerOwner(c net.Conn) (uint32, error) {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, ErrUnsupported
	}
	uid, err := ListenerOwner(remote.IP, remote.Port)
	if !errors.Is(err, ErrGone) {
		return uid, err
	}
	family := uint8(unix.AF_INET6)
	if remote.IP.To4() != nil && local.IP.To4() != nil {
		family = unix.AF_INET
	}
	msgs, err := diagQuery(diagRequest(family, 0xffffffff, remote, local, false))
	switch {
	case errors.Is(err, ErrGone) && establishedHere(family, local, remote):
		return 0, ErrForwarded
	case errors.Is(err, ErrGone):
		return 0, err // reset: the listener closed with it unaccepted
	case err != nil:
		return 0, err
	case len(msgs) != 1 || msgs[0].inode == 0:
		return 0, ErrGone // closed by its process: no owner to tell
	}
	return msgs[0].uid, nil
}

// ListenerOwner returns the user ID of the process listening on port that takes
// connections to ip (see ServerOwner); ErrGone when there is none.
func ListenerOwner(ip net.IP, port int) (uint32, error) {
	found := false
	var owner uint32
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		msgs, err := diagQuery(diagRequest(family, 1<<tcpListen, &net.TCPAddr{Port: port}, &net.TCPAddr{}, true))
		if err != nil {
			return 0, err
		}
		for _, m := range msgs {
			if m.state != tcpListen || m.srcPort != port || m.inode == 0 || !listenerTakes(m, ip) {
				continue
			}
			if !found || Trusted(owner) {
				owner = m.uid
			}
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("%w (no listener on port %d)", ErrGone, port)
	}
	return owner, nil
}

// listenerTakes reports whether a listener bound to m.src accepts connections to ip.
func listenerTakes(m diagMsg, ip net.IP) bool {
	if m.src.IsUnspecified() || m.src.Equal(ip) {
		return true // net.IP.Equal also matches an IPv4-mapped IPv6 address
	}
	return false
}

// diagRequest is a netlink message asking for TCP sockets of family in states whose
// local address is src and remote address is dst; dump asks for every match (the
// kernel filters a dump by the ports only), otherwise for the one exact match.
func diagRequest(family uint8, states uint32, src, dst *net.TCPAddr, dump bool) []byte {
	const hdrLen, reqLen = unix.SizeofNlMsghdr, 56
	b := make([]byte, hdrLen+reqLen)
	binary.NativeEndian.PutUint32(b[0:], hdrLen+reqLen)
	binary.NativeEndian.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	flags := uint16(unix.NLM_F_REQUEST)
	if dump {
		flags |= unix.NLM_F_DUMP
	}
	binary.NativeEndian.PutUint16(b[6:], flags)
	r := b[hdrLen:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], states)
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], uint16(src.Port))
	binary.BigEndian.PutUint16(id[2:], uint16(dst.Port))
	putDiagAddr(id[4:20], family, src.IP)
	putDiagAddr(id[20:36], family, dst.IP)
	binary.NativeEndian.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(id[44:], 0xffffffff)
	return b
}

func putDiagAddr(b []byte, family uint8, ip net.IP) {
	if ip == nil {
		return
	}
	if family == unix.AF_INET {
		copy(b, ip.To4())
		return
	}
	copy(b, ip.To16())
}

// diagQuery sends req and reads the answers: one message for an exact lookup, every
// part of a dump up to NLMSG_DONE. "No such socket" is ErrGone.
func diagQuery(req []byte) ([]diagMsg, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("netlink sock_diag: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 1}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink sock_diag: %w", err)
	}
	var out []diagMsg
	buf := make([]byte, 32<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netlink sock_diag: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netlink sock_diag: unreadable answer: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("netlink sock_diag: short error")
				}
				errno := syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data)))
				switch errno {
				case 0:
					return out, nil // an acknowledgement
				case unix.ENOENT:
					return nil, ErrGone
				case unix.EPROTONOSUPPORT, unix.EOPNOTSUPP:
					return nil, fmt.Errorf("%w (netlink sock_diag: %v)", ErrUnsupported, errno)
				}
				return nil, fmt.Errorf("netlink sock_diag: %w", errno)
			case unix.SOCK_DIAG_BY_FAMILY:
				d, err := parseDiagMsg(m.Data)
				if err != nil {
					return nil, err
				}
				out = append(out, d)
				if m.Header.Flags&unix.NLM_F_MULTI == 0 {
					return out, nil // the one answer of an exact lookup
				}
			}
		}
	}
}

// parseDiagMsg reads struct inet_diag_msg: family, state, timer, retrans (a byte
// each); the socket's id (ports big-endian at 4 and 6, addresses at 8 and 24, then
// interface and cookie); expires, rqueue, wqueue, uid, inode (4 bytes each, host order).
func parseDiagMsg(d []byte) (diagMsg, error) {
	if len(d) < 72 {
		return diagMsg{}, errors.New("netlink sock_diag: short answer")
	}
	m := diagMsg{family: d[0], state: d[1],
		srcPort: int(binary.BigEndian.Uint16(d[4:])), dstPort: int(binary.BigEndian.Uint16(d[6:])),
		uid: binary.NativeEndian.Uint32(d[64:]), inode: binary.NativeEndian.Uint32(d[68:])}
	if m.family == unix.AF_INET {
		m.src, m.dst = net.IP(append([]byte(nil), d[8:12]...)), net.IP(append([]byte(nil), d[24:28]...))
	} else {
		m.src, m.dst = net.IP(append([]byte(nil), d[8:24]...)), net.IP(append([]byte(nil), d[24:40]...))
	}
	return m, nil
}
