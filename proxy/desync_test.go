package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// strayUpstream is an HTTP/1.1 gateway that answers every request with
// "answer-for-PATH", except /a, whose answer (head) is followed a moment later by
// late: bytes nobody asked for, arriving after the proxy has read the answer.
func strayUpstream(t *testing.T, head, late string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, r.Body)
					if r.URL.Path == "/a" {
						io.WriteString(c, head)
						time.Sleep(30 * time.Millisecond)
						io.WriteString(c, late)
						continue
					}
					body := "answer-for-" + r.URL.Path
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "localhost:" + port
}

// TestPooledConnectionWithStrayBytesIsNotReused: an upstream connection that
// received bytes after its last answer was read (a buggy upstream's second
// response, a body after HEAD, 204 or 304, more body than Content-Length said) is
// never used again. Responses match requests by order only, so reusing it would
// hand every later client, each with its own token-carrying request, the answer
// meant for the client before. Both the fast path and net/http's path, each later
// request from a new client connection.
func TestPooledConnectionWithStrayBytesIsNotReused(t *testing.T) {
	cases := map[string]struct{ method, head, late string }{
		"second response":      {"GET", "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nanswer-for-/a", "HTTP/1.1 500 Oops\r\nContent-Length: 9\r\n\r\nstray-500"},
		"body after HEAD":      {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n", "SECRET-BODY-OF-A-123"},
		"body after 204":       {"GET", "HTTP/1.1 204 No Content\r\n\r\n", "SECRET-BODY-OF-A-204"},
		"body after 304":       {"GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\n\r\n", "SECRET-BODY-OF-A-304"},
		"more than its length": {"GET", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbeg-", "SECRET-REST-OF-A"},
	}
	for name, tc := range cases {
		for _, path := range []string{"fast", "net/http"} {
			t.Run(name+"/"+path, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				gw := strayUpstream(t, tc.head, tc.late)
				e.src.add(gw, Gateway{Profile: "work", PlainHTTP: true})
				extra := ""
				if path == "net/http" {
					extra = "TE: trailers\r\n" // declined by the fast path
				}
				for i, p := range []string{"/a", "/b", "/c", "/d"} {
					m := "GET"
					if i == 0 {
						m = tc.method
					}
					out := rawRequest(t, e.srv.Addr(), m+" http://"+gw+p+" HTTP/1.1\r\nHost: "+gw+"\r\n"+extra+"Connection: close\r\n\r\n")
					if i > 0 && (!strings.HasSuffix(out, "\r\n\r\nanswer-for-"+p) || strings.Contains(out, "SECRET") || strings.Contains(out, "stray")) {
						t.Fatalf("client %d asked for %s and got:\n%s", i+1, p, out)
					}
					if i == 0 {
						time.Sleep(60 * time.Millisecond) // the stray bytes arrive
					}
				}
			})
		}
	}
}
