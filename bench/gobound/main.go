// Command gobound is a reference point for bench/proxy.sh, not a proxy anyone should use:
// the least a Go forward proxy can do per request on this machine. Each client connection
// gets one goroutine and one upstream connection of its own (no pool), nothing is logged,
// there is no policy, and only what the benchmark sends is handled (absolute-form requests
// without a body, Content-Length responses).
//
//	-parse raw   finds the request target and Content-Length in the bytes (no parsing)
//	-parse std   parses with net/http's own http.ReadRequest and http.ReadResponse
//	-cert/-key   intercepts TLS instead: answers the client's CONNECT, terminates its TLS
//	             with this certificate, and talks TLS to the upstream (-upstream-ca)
//
// Its rps and p99 beside nginx's say how far any Go proxy, including gatepass, can get here.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18799", "address to listen on")
	upstream := flag.String("upstream", "127.0.0.1:18080", "the one upstream every request goes to")
	parse := flag.String("parse", "raw", "raw or std")
	certFile := flag.String("cert", "", "intercept TLS: PEM certificate for the client side")
	keyFile := flag.String("key", "", "intercept TLS: PEM key for -cert")
	upstreamCA := flag.String("upstream-ca", "", "intercept TLS: PEM CA of the upstream")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here until SIGINT")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		go func() {
			<-sig
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(0)
		}()
	}
	serve := serveRaw
	if *parse == "std" {
		serve = serveStd
	}
	var front, back *tls.Config
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		pem, err := os.ReadFile(*upstreamCA)
		if err != nil {
			log.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		front = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
		back = &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			var u net.Conn
			if front != nil {
				if c, err = intercept(c, front); err != nil {
					return
				}
				u, err = tls.Dial("tcp", *upstream, back)
			} else {
				u, err = net.Dial("tcp", *upstream)
			}
			if err != nil {
				return
			}
			defer u.Close()
			serve(c, u)
		}()
	}
}

// intercept answers a CONNECT (its head read and ignored) and terminates the
// client's TLS inside the tunnel.
func intercept(c net.Conn, cfg *tls.Config) (net.Conn, error) {
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if len(line) <= 2 {
			break
		}
	}
	if br.Buffered() > 0 { // a client that sends its hello before our 200 is not handled here
		return nil, io.ErrUnexpectedEOF
	}
	if _, err := c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return nil, err
	}
	tc := tls.Server(c, cfg)
	return tc, tc.Handshake()
}

var contentLength = []byte("content-length:")

func serveRaw(c, u net.Conn) {
	cr := bufio.NewReaderSize(c, 4096)
	ur := bufio.NewReaderSize(u, 4096)
	var req, resp bytes.Buffer
	for {
		req.Reset()
		line, err := cr.ReadSlice('\n')
		if err != nil {
			return
		}
		// "GET http://host/path HTTP/1.1" becomes "GET /path HTTP/1.1".
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			return
		}
		target := line[sp+1:]
		if bytes.HasPrefix(target, []byte("http://")) {
			i := bytes.IndexByte(target[7:], '/')
			if i < 0 {
				return
			}
			target = target[7+i:]
		}
		req.Write(line[:sp+1])
		req.Write(target)
		for {
			h, err := cr.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(h) <= 2 {
				break
			}
			req.Write(h)
		}
		req.WriteString("Authorization: Bearer bench-token\r\n\r\n")
		if _, err := u.Write(req.Bytes()); err != nil {
			return
		}
		resp.Reset()
		n := 0
		for {
			h, err := ur.ReadSlice('\n')
			if err != nil {
				return
			}
			resp.Write(h)
			if len(h) <= 2 {
				break
			}
			if len(h) > len(contentLength) && bytes.EqualFold(h[:len(contentLength)], contentLength) {
				n, _ = strconv.Atoi(string(bytes.TrimSpace(h[len(contentLength):])))
			}
		}
		if _, err := io.CopyN(&resp, ur, int64(n)); err != nil {
			return
		}
		if _, err := c.Write(resp.Bytes()); err != nil {
			return
		}
	}
}

func serveStd(c, u net.Conn) {
	cr := bufio.NewReaderSize(c, 4096)
	cw := bufio.NewWriterSize(c, 4096)
	ur := bufio.NewReaderSize(u, 4096)
	uw := bufio.NewWriterSize(u, 4096)
	for {
		req, err := http.ReadRequest(cr)
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer bench-token")
		req.Header.Del("Proxy-Connection")
		uw.WriteString(req.Method + " " + req.URL.RequestURI() + " HTTP/1.1\r\nHost: " + req.Host + "\r\n")
		req.Header.Write(uw)
		uw.WriteString("\r\n")
		if err := uw.Flush(); err != nil {
			return
		}
		resp, err := http.ReadResponse(ur, req)
		if err != nil {
			return
		}
		cw.WriteString("HTTP/1.1 " + strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode) + "\r\n")
		resp.Header.Write(cw) // keeps the upstream's Content-Length
		cw.WriteString("\r\n")
		_, err = io.Copy(cw, resp.Body)
		resp.Body.Close()
		if err != nil || cw.Flush() != nil {
			return
		}
	}
}
