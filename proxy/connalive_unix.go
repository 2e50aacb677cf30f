//go:build unix

package proxy

import (
	"crypto/tls"
	"syscall"
)

// connAlive reports whether an idle upstream connection is still open: a non-blocking
// peek must find nothing to read. EOF means the upstream closed it; any byte (a TLS
// close_notify, a stray response) means it is out of step. The socket's RawConn is
// looked up once per connection and kept in c (SyscallConn allocates).
func connAlive(c *h1Conn) bool {
	if c.raw == nil {
		nc := c.conn
		if tc, ok := nc.(*tls.Conn); ok {
			nc = tc.NetConn()
		}
		sc, ok := nc.(syscall.Conn)
		if !ok {
			return true
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		c.raw = rc
	}
	alive := false
	var buf [1]byte
	// Control, not Read: a non-blocking peek needs neither the read lock nor the
	// poller (it runs before every request on a reused connection).
	err := c.raw.Control(func(fd uintptr) {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
	})
	return err == nil && alive
}
