// Package peertest makes sockets of another user, for tests of package peer's users.
package peertest

import (
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// ListenAs opens a TCP listener on addr whose socket belongs to uid. The kernel gives
// a new socket its thread's filesystem uid, which root may set for one locked thread
// (asUser). Needs root.
func ListenAs(uid int, addr string) (net.Listener, error) {
	return asUser(uid, func() (net.Listener, error) { return net.Listen("tcp", addr) })
}

// AcceptAs accepts one connection on ln as uid: the kernel gives an accepted socket
// its accepting thread's filesystem uid. Needs root.
func AcceptAs(uid int, ln net.Listener) (net.Conn, error) {
	return asUser(uid, ln.Accept)
}

// asUser runs f on a thread of its own whose filesystem uid is uid (that thread is
// never unlocked: it ends with its goroutine).
func asUser[T any](uid int, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setfsuid(uid); err != nil {
			var zero T
			ch <- result{zero, err}
			return
		}
		v, err := f()
		unix.Setfsuid(os.Getuid())
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}
