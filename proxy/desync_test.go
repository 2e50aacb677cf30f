package proxy

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// strayUpstream is an HTTP/1.1 gateway (rawUpstream) that answers every request
// with "answer-for-PATH", except /a, whose answer (head) is followed a moment later
// by late: bytes nobody asked for, arriving after the proxy has read the answer.
func strayUpstream(t *testing.T, head, late string) string {
	t.Helper()
	u := newRawUpstreamLate(t, func(r *http.Request, _ int) (string, bool) {
		if r.URL.Path == "/a" {
			return head, false
		}
		body := "answer-for-" + r.URL.Path
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body), false
	}, func(r *http.Request, _ int) string {
		if r.URL.Path == "/a" {
			return late
		}
		return ""
	})
	_, port, _ := net.SplitHostPort(u.addr())
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
				// The upstream first: its cleanup waits for its connections, which
				// the proxy's (registered later, so run first) closes.
				gw := strayUpstream(t, tc.head, tc.late)
				e := newEnv(t)
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
