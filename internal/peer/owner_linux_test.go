package peer

import (
	"errors"
	"net"
	"os"
	"testing"
)

// The real lookup (netlink sock_diag) against real sockets.
func TestPeerOwnerOfLoopbackConnections(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("no %s here: %v", addr, err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			a, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			uid, err := Owner(a)
			if err != nil || uid != uint32(os.Getuid()) {
				t.Fatalf("peerOwner = %d, %v; want this process's uid %d", uid, err, os.Getuid())
			}
			// Closed by its process, the client's socket has no owner any more: never
			// "uid 0" (which the proxy would let in).
			c.Close()
			if uid, err := Owner(a); !errors.Is(err, ErrGone) {
				t.Fatalf("after the client closed: peerOwner = %d, %v; want ErrGone", uid, err)
			}
		})
	}
	if err := Probe(Owner); err != nil {
		t.Fatalf("the check does not work on Linux: %v", err)
	}
}
