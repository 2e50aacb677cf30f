//go:build !linux

package peer

import "net"

// Owner: only Linux is asked who holds a loopback connection.
func Owner(net.Conn) (uint32, error) { return 0, ErrUnsupported }

// ServerOwner: only Linux is asked who runs a loopback server.
func ServerOwner(net.Conn) (uint32, error) { return 0, ErrUnsupported }

// ListenerOwner: only Linux is asked who runs a loopback server.
func ListenerOwner(net.IP, int) (uint32, error) { return 0, ErrUnsupported }
