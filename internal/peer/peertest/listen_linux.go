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
// (that thread is never unlocked: it ends with its goroutine). Needs root.
func ListenAs(uid int, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setfsuid(uid); err != nil {
			ch <- result{nil, err}
			return
		}
		ln, err := net.Listen("tcp", addr)
		unix.Setfsuid(os.Getuid())
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

// AcceptAs accepts one connection on ln as uid: the kernel gives an accepted socket
// its accepting thread's filesystem uid. Needs root.
func AcceptAs(uid int, ln net.Listener) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setfsuid(uid); err != nil {
			ch <- result{nil, err}
			return
		}
		c, err := ln.Accept()
		unix.Setfsuid(os.Getuid())
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
