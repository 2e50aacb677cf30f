//go:build !linux

package proxy

import "net"

// peerOwner: only Linux is asked who holds a loopback connection (peer.go).
func peerOwner(net.Conn) (uint32, error) { return 0, errPeerUnsupported }
