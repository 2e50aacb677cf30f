package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/internal/peer"
)

// The benchmarks measure the proxy's own cost per request, in process: a raw
// keep-alive client and a raw upstream that answer without net/http, so that what
// allocates is the proxy. Run: go test -run '^$' -bench . -benchmem ./proxy
// (bench/proxy.sh compares whole processes against nginx and others).

// fixedUpstream answers every request head on a connection with a fixed response.
func fixedUpstream(b *testing.B, cert *tls.Certificate) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\nDate: Sat, 28 Nov 2026 12:00:00 GMT\r\n\r\nhello\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if cert != nil {
				c = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"http/1.1"}})
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// A request head ends with an empty line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// benchClient sends b.N requests over one keep-alive connection and reads each answer.
func benchClient(b *testing.B, conn net.Conn, req []byte) {
	b.Helper()
	br := bufio.NewReader(conn)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
			b.Fatalf("%d %v", resp.StatusCode, err)
		}
	}
}

func benchServer(b *testing.B, src *fakeSource, caNames []string, roots *x509.CertPool) *Server {
	return startServer(b, Options{Listen: "127.0.0.1:0", Tokens: src, CA: &memCAStore{}, CANames: caNames, UpstreamRootCAs: roots})
}

// BenchmarkPlainGateway: absolute-form requests to a plain-HTTP gateway, token injected.
func BenchmarkPlainGateway(b *testing.B) {
	up := fixedUpstream(b, nil)
	_, port, _ := net.SplitHostPort(up)
	src := newFakeSource()
	src.add("localhost:"+port, Gateway{Profile: "work", PlainHTTP: true})
	srv := benchServer(b, src, nil, nil)
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	target := "localhost:" + port
	benchClient(b, conn, []byte("GET http://"+target+"/api/items?limit=10 HTTP/1.1\r\nHost: "+target+"\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"))
}

// BenchmarkInterceptedGateway: requests inside an intercepted tunnel to a TLS gateway.
func BenchmarkInterceptedGateway(b *testing.B) {
	pki := newTestPKI(b)
	up := fixedUpstream(b, &pki.cert)
	_, port, _ := net.SplitHostPort(up)
	src := newFakeSource()
	src.add("localhost:"+port, Gateway{Profile: "work"})
	srv := benchServer(b, src, []string{"localhost"}, pki.pool)
	target := "localhost:" + port
	conn, _ := openTunnel(b, &env{srv: srv}, target)
	conn.SetDeadline(time.Time{}) // openTunnel's is for tests; a benchmark may run longer
	benchClient(b, conn, []byte("GET /api/items?limit=10 HTTP/1.1\r\nHost: "+target+"\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"))
}

// BenchmarkNewConnection: one request per new connection to a plain-HTTP gateway (as
// a curl per call does), with the check of who connected (peer.go) and without it;
// their ratio is the check's cost to such a client.
func BenchmarkNewConnection(b *testing.B) {
	for _, bc := range []struct {
		name  string
		owner func(net.Conn) (uint32, error)
	}{
		{"peer-check", peer.Owner},
		{"no-check", func(net.Conn) (uint32, error) { return 0, peer.ErrUnsupported }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			up := fixedUpstream(b, nil)
			_, port, _ := net.SplitHostPort(up)
			src := newFakeSource()
			src.add("localhost:"+port, Gateway{Profile: "work", PlainHTTP: true})
			srv := startServer(b, Options{Listen: "127.0.0.1:0", Tokens: src, peerOwner: bc.owner})
			if on := srv.peers.on; on != (bc.name == "peer-check") {
				b.Skipf("peer check on = %v here (%v)", on, srv.peers.off)
			}
			target := "localhost:" + port
			req := []byte("GET http://" + target + "/api/items HTTP/1.1\r\nHost: " + target + "\r\nConnection: close\r\n\r\n")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				conn, err := net.Dial("tcp", srv.Addr())
				if err != nil {
					b.Fatal(err)
				}
				conn.Write(req)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("%v %v", resp, err)
				}
				io.Copy(io.Discard, resp.Body)
				conn.Close()
			}
		})
	}
}
