// Command evloop is a reference point for bench/proxy.sh, not a proxy anyone should use:
// what a Go forward proxy gets here once it leaves goroutines and Go's netpoller for
// its own epoll event loops (github.com/panjf2000/gnet, as nginx is built). Each event
// loop keeps a pool of upstream connections of its own, so that a request never leaves
// the loop that read it. Like bench/gobound -parse raw it parses nothing it can skip,
// logs nothing and has no policy: it handles only what the benchmark sends (absolute-form
// requests without a body, answers with a Content-Length) and sets one Authorization.
//
// Its rps and p99 beside nginx's and go-bound-raw's say what an event loop in gatepass's
// token path could buy on this machine (bench/README.md, "An event loop?").
//
// It is a module of its own so that gatepass itself does not depend on gnet.
package main

import (
	"bytes"
	"context"
	"flag"
	"log"
	"net"
	"strconv"
	"sync"

	"github.com/panjf2000/gnet/v2"
)

type client struct{ up gnet.Conn }

type upstream struct{ cl gnet.Conn }

// pool is one event loop's upstream connections; only that loop touches it.
type pool struct {
	idle []gnet.Conn
	wait []pending // requests waiting for a connection being dialled
}

type pending struct {
	cl  gnet.Conn
	req []byte
}

type proxy struct {
	gnet.BuiltinEventEngine
	upstream net.Addr
	pools    sync.Map // gnet.EventLoop -> *pool
}

var (
	crlf2 = []byte("\r\n\r\n")
	auth  = []byte("Authorization: Bearer bench-token\r\n\r\n")
	clKey = []byte("\r\nContent-Length: ")
)

func (p *proxy) pool(c gnet.Conn) *pool {
	if pl, ok := p.pools.Load(c.EventLoop()); ok {
		return pl.(*pool)
	}
	pl, _ := p.pools.LoadOrStore(c.EventLoop(), &pool{})
	return pl.(*pool)
}

func (p *proxy) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if _, ok := c.Context().(*upstream); ok {
		p.release(c) // a dialled upstream connection joined this loop
		return nil, gnet.None
	}
	c.SetContext(&client{})
	return nil, gnet.None
}

func (p *proxy) OnClose(c gnet.Conn, _ error) gnet.Action {
	switch x := c.Context().(type) {
	case *client:
		if x.up != nil {
			// An answer nobody will read: gnet closes x.up later, and its bytes may
			// arrive first, so it must no longer point here (gnet clears a closed
			// connection's context).
			if u, ok := x.up.Context().(*upstream); ok {
				u.cl = nil
			}
			x.up.Close()
		}
	case *upstream:
		if x.cl != nil {
			x.cl.Close()
		}
		pl := p.pool(c)
		for i, u := range pl.idle {
			if u == c {
				pl.idle = append(pl.idle[:i], pl.idle[i+1:]...)
				break
			}
		}
	}
	return gnet.None
}

func (p *proxy) release(up gnet.Conn) {
	pl := p.pool(up)
	for len(pl.wait) > 0 {
		w := pl.wait[0]
		pl.wait = pl.wait[1:]
		if _, open := w.cl.Context().(*client); !open {
			continue // the client hung up while its connection was dialled
		}
		p.send(up, w.cl, w.req)
		return
	}
	pl.idle = append(pl.idle, up)
}

func (p *proxy) send(up, cl gnet.Conn, req []byte) {
	up.Context().(*upstream).cl = cl
	cl.Context().(*client).up = up
	up.Write(req)
}

func (p *proxy) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *client:
		buf, _ := c.Peek(-1)
		end := bytes.Index(buf, crlf2)
		if end < 0 {
			return gnet.None
		}
		head := buf[:end+4]
		// "GET http://host:port/path HTTP/1.1\r\n" -> "GET /path HTTP/1.1\r\n"
		sp := bytes.IndexByte(head, ' ')
		eol := bytes.Index(head, crlf2[:2])
		scheme := bytes.Index(head[sp:eol], []byte("://"))
		if sp < 0 || scheme < 0 {
			return gnet.Close
		}
		path := bytes.IndexByte(head[sp+scheme+3:eol], '/')
		if path < 0 {
			return gnet.Close
		}
		req := make([]byte, 0, len(head)+len(auth))
		req = append(req, head[:sp+1]...)
		req = append(req, head[sp+scheme+3+path:eol+2]...)
		req = append(req, head[eol+2:len(head)-2]...)
		req = append(req, auth...)
		c.Discard(len(head))
		pl := p.pool(c)
		if n := len(pl.idle); n > 0 {
			up := pl.idle[n-1]
			pl.idle = pl.idle[:n-1]
			p.send(up, c, req)
			return gnet.None
		}
		pl.wait = append(pl.wait, pending{c, req})
		res, err := c.EventLoop().Register(gnet.NewContext(context.Background(), &upstream{}), p.upstream)
		if err != nil {
			return gnet.Close
		}
		go func() {
			// The benchmark's upstream is always there: a failed dial ends the run loudly.
			if r := <-res; r.Err != nil {
				log.Fatal(r.Err)
			}
		}()
	case *upstream:
		buf, _ := c.Peek(-1)
		end := bytes.Index(buf, crlf2)
		if end < 0 {
			return gnet.None
		}
		i := bytes.Index(buf[:end+2], clKey)
		if i < 0 {
			return gnet.Close // not what the benchmark's upstream sends
		}
		j := bytes.Index(buf[i+len(clKey):], crlf2[:2])
		n, err := strconv.Atoi(string(buf[i+len(clKey) : i+len(clKey)+j]))
		if err != nil {
			return gnet.Close
		}
		total := end + 4 + n
		if len(buf) < total {
			return gnet.None
		}
		if x.cl != nil {
			if cl, open := x.cl.Context().(*client); open {
				x.cl.Write(buf[:total])
				cl.up = nil
			}
			x.cl = nil
		}
		c.Discard(total)
		p.release(c)
	}
	return gnet.None
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18795", "address to listen on")
	up := flag.String("upstream", "127.0.0.1:18080", "the one upstream every request goes to")
	loops := flag.Int("loops", 2, "event loops (OS threads)")
	flag.Parse()
	a, err := net.ResolveTCPAddr("tcp", *up)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(gnet.Run(&proxy{upstream: a}, "tcp://"+*listen,
		gnet.WithNumEventLoop(*loops), gnet.WithTCPNoDelay(gnet.TCPNoDelay)))
}
