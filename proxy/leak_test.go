package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
	"time"
)

// TestLeakSuite runs a recognisable token through every path the proxy has and checks
// it reaches only gateway upstreams (over TLS, or plain HTTP where listed), never a
// non-gateway upstream, never a log line or OnRequest entry, never a client response.
func TestLeakSuite(t *testing.T) {
	e := newEnv(t)
	// A gateway that redirects to a non-gateway host: the follow-up must carry nothing.
	e.tlsGW.handler = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, e.otherHTTPURL()+"/after-redirect", http.StatusFound)
		case "/error":
			http.Error(w, "gateway says no", http.StatusForbidden)
		default:
			if r.Header.Get("Upgrade") == "websocket" {
				wsEcho(w, r)
				return
			}
			io.WriteString(w, "ok")
		}
	}
	c := e.client()
	var responses []string
	record := func(resp *http.Response, body string) {
		dump, _ := httputil.DumpResponse(resp, false)
		responses = append(responses, string(dump)+body)
	}
	do := func(method, u string, hdr ...string) {
		t.Helper()
		req, _ := http.NewRequest(method, u, strings.NewReader("body"))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			responses = append(responses, err.Error())
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		record(resp, string(b))
	}
	raw := func(req string) { responses = append(responses, rawRequest(t, e.srv.Addr(), req)) }
	rawHead := func(req string) {
		conn, err := net.Dial("tcp", e.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		record(resp, "")
	}
	inTunnel := func(connectTo, req string) {
		conn, err := net.Dial("tcp", e.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", connectTo, connectTo)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT %s: %v %v", connectTo, resp, err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(e.srv.CACertPEM())
		tc := tls.Client(conn, &tls.Config{ServerName: "localhost", RootCAs: pool})
		io.WriteString(tc, req)
		b, _ := io.ReadAll(tc)
		responses = append(responses, string(b))
	}
	tlsHost := "localhost:" + e.tlsGW.port()
	otherHTTPHost := "127.0.0.1:" + e.otherHTTP.port()
	otherTLSHost := "127.0.0.1:" + e.otherTLS.port()
	// A gateway NOT listed in plain_http that does answer plain HTTP: the TLS-only
	// gateway above cannot show a plain-HTTP request that was sent (its TLS server
	// records none), this one records any that reaches it.
	noPlain := newUpstream(t, "gateway-without-plain_http", nil, false)
	noPlainHost := "localhost:" + noPlain.port()
	e.src.add(noPlainHost, Gateway{Profile: "work"})

	// Every path.
	do("GET", e.plainGWURL()+"/plain")                   // plain gateway: token expected
	do("POST", e.tlsGWURL()+"/tls")                      // intercepted gateway: token expected
	do("GET", e.tlsGWURL()+"/redirect")                  // gateway redirecting to a non-gateway
	do("GET", e.tlsGWURL()+"/error")                     // gateway error passes back
	do("GET", e.otherHTTPURL()+"/other")                 // non-gateway HTTP
	do("GET", e.otherTLSURL()+"/other")                  // non-gateway TLS tunnel
	do("GET", "http://"+tlsHost+"/plain-to-tls-gateway") // gateway not in plain_http: refused
	raw("GET http://" + tlsHost + "@" + otherHTTPHost + "/userinfo HTTP/1.1\r\nHost: " + tlsHost + "\r\nConnection: close\r\n\r\n")
	raw("GET http://" + otherHTTPHost + "/abs HTTP/1.1\r\nHost: " + tlsHost + "\r\nConnection: close\r\n\r\n")
	// Absolute-form to a gateway with a Host header naming another host (raw: Go's
	// client never sends Header["Host"]). The URL's authority decides (RFC 9112
	// §3.2.2): the gateway gets the token, with the URL's authority as its Host.
	raw("GET " + e.plainGWURL() + "/host-steer-other HTTP/1.1\r\nHost: " + otherHTTPHost + "\r\nConnection: close\r\n\r\n")       // fast path
	raw("GET " + e.plainGWURL() + "/host-steer-evil HTTP/1.1\r\nHost: evil.example\r\nTe: trailers\r\nConnection: close\r\n\r\n") // net/http path (the fast path declines TE)
	raw("GET " + e.tlsGWURL() + "/host-steer-tls HTTP/1.1\r\nHost: " + otherTLSHost + "\r\nConnection: close\r\n\r\n")            // https absolute-form in the clear
	raw("GET /origin-form HTTP/1.1\r\nHost: " + tlsHost + "\r\nConnection: close\r\n\r\n")
	rawHead("GET http://localhost:" + e.plainGW.port() + "/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	rawHead("GET http://" + otherHTTPHost + "/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	inTunnel(tlsHost, "GET /steer HTTP/1.1\r\nHost: "+otherTLSHost+"\r\nConnection: close\r\n\r\n")                        // Host steering inside the tunnel
	inTunnel(tlsHost, "GET https://"+otherTLSHost+"/steer-abs HTTP/1.1\r\nHost: "+tlsHost+"\r\nConnection: close\r\n\r\n") // absolute-form steering
	inTunnel(tlsHost, "GET https://"+otherTLSHost+"/steer-abs2 HTTP/1.1\r\nHost: "+otherTLSHost+"\r\nConnection: close\r\n\r\n")
	inTunnel(tlsHost, "GET /ok HTTP/1.1\r\nHost: "+tlsHost+"\r\nConnection: close\r\n\r\n")
	// http:// to a gateway not in plain_http, on every path: 403 https_required, nothing sent.
	refusedFrom := len(responses)
	do("GET", "http://"+noPlainHost+"/no-plain-get", "Authorization", "Bearer caller-own") // fast path's head
	do("POST", "http://"+noPlainHost+"/no-plain-post")
	raw("GET http://" + noPlainHost + "/no-plain-te HTTP/1.1\r\nHost: " + noPlainHost + "\r\nTe: trailers\r\nConnection: close\r\n\r\n")             // net/http path
	raw("GET http://" + noPlainHost + "/no-plain-steer HTTP/1.1\r\nHost: " + otherHTTPHost + "\r\nConnection: close\r\n\r\n")                        // Host names a non-gateway
	rawHead("GET http://" + noPlainHost + "/no-plain-ws HTTP/1.1\r\nHost: " + noPlainHost + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n") // upgrade
	for i, r := range responses[refusedFrom:] {
		if !strings.HasPrefix(r, "HTTP/1.1 403") || !strings.Contains(r, "https_required") {
			t.Errorf("plain HTTP to a gateway not in plain_http (request %d): want 403 https_required, got:\n%s", i, r)
		}
	}
	// One kept-alive client connection on the plain-HTTP fast path: gateway,
	// non-gateway, gateway, with the same Host field on all three (only the target
	// says where each goes). A decision kept from one request and reused for another
	// target would send the token, or the request, to the wrong upstream.
	fastBefore := e.srv.fastServed.Load()
	func() {
		conn, err := net.Dial("tcp", e.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		for _, target := range []string{e.plainGWURL() + "/keepalive-gw-1", e.otherHTTPURL() + "/keepalive-other", e.plainGWURL() + "/keepalive-gw-2"} {
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost:%s\r\nAuthorization: Bearer caller-own\r\n\r\n", target, e.plainGW.port())
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
			if err != nil {
				t.Fatalf("kept-alive connection, %s: %v", target, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			record(resp, string(b))
			if resp.StatusCode != 200 || resp.Close {
				t.Fatalf("kept-alive connection, %s: %d (close %v), want 200 on a kept connection", target, resp.StatusCode, resp.Close)
			}
		}
	}()
	if n := e.srv.fastServed.Load() - fastBefore; n != 3 {
		t.Errorf("the fast path served %d of the 3 kept-alive requests, want 3: the check proves nothing", n)
	}
	e.src.signIn["work"] = true
	do("GET", e.tlsGWURL()+"/signin")
	do("GET", e.plainGWURL()+"/signin")
	e.src.signIn["work"] = false

	token := e.src.current()
	if token == "" {
		t.Fatal("no token was ever issued: the suite proves nothing")
	}
	// Gateways got the token, only over TLS or listed plain HTTP.
	if got := e.tlsGW.requests(); len(got) < 3 || !strings.Contains(got[0].String(), "Bearer "+token) {
		t.Errorf("the intercepted gateway did not receive the token: %v", got)
	}
	for _, r := range e.tlsGW.requests() {
		if strings.Contains(r.URI, "plain-to-tls") {
			t.Errorf("the TLS-only gateway received a plain-HTTP request: %s", r)
		}
	}
	if got := e.plainGW.requests(); len(got) == 0 || !strings.Contains(got[0].String(), "Bearer "+token) {
		t.Errorf("the plain_http gateway did not receive the token")
	}
	// The Host header did not steer the absolute-form requests: each reached the
	// gateway its URL names, with that authority as Host and the token.
	for _, hs := range []struct {
		up        *upstream
		uri, host string
	}{
		{e.plainGW, "/host-steer-other", "localhost:" + e.plainGW.port()},
		{e.plainGW, "/host-steer-evil", "localhost:" + e.plainGW.port()},
		{e.tlsGW, "/host-steer-tls", tlsHost},
	} {
		n := 0
		for _, r := range hs.up.requests() {
			if r.URI != hs.uri {
				continue
			}
			n++
			if r.Host != hs.host {
				t.Errorf("%s reached %s with Host %q, want the URL's %q", hs.uri, hs.up.name, r.Host, hs.host)
			}
			if got := r.Header.Get("Authorization"); got != "Bearer "+token {
				t.Errorf("%s reached %s with Authorization %q, want the token", hs.uri, hs.up.name, got)
			}
		}
		if n != 1 {
			t.Errorf("%s reached the gateway %s %d times, want once", hs.uri, hs.up.name, n)
		}
	}
	// The gateway not in plain_http never got a plain-HTTP request (with or without a token).
	for _, r := range noPlain.requests() {
		t.Errorf("the gateway not in plain_http received a plain-HTTP request:\n%s", r)
	}
	// On the kept-alive connection, each request reached the upstream its target
	// names: the non-gateway got its own (with the caller's Authorization, checked
	// for a canary below), the gateway only its two.
	keptAlive := map[*upstream][]string{}
	for _, u := range []*upstream{e.plainGW, e.otherHTTP} {
		for _, r := range u.requests() {
			if strings.HasPrefix(r.URI, "/keepalive-") {
				keptAlive[u] = append(keptAlive[u], r.URI)
				if u == e.otherHTTP && r.Header.Get("Authorization") != "Bearer caller-own" {
					t.Errorf("the non-gateway got %s with Authorization %q, want the caller's own", r.URI, r.Header.Values("Authorization"))
				}
			}
		}
	}
	if got := keptAlive[e.plainGW]; strings.Join(got, " ") != "/keepalive-gw-1 /keepalive-gw-2" {
		t.Errorf("on the kept-alive connection the gateway got %v, want /keepalive-gw-1 /keepalive-gw-2", got)
	}
	if got := keptAlive[e.otherHTTP]; strings.Join(got, " ") != "/keepalive-other" {
		t.Errorf("on the kept-alive connection the non-gateway got %v, want /keepalive-other", got)
	}
	// Non-gateways never saw a canary.
	for _, u := range []*upstream{e.otherHTTP, e.otherTLS} {
		if len(u.requests()) == 0 {
			t.Errorf("%s received nothing: the suite did not exercise it", u.name)
		}
		for _, r := range u.requests() {
			if strings.Contains(r.String(), canaryPrefix) {
				t.Errorf("TOKEN LEAK to non-gateway %s:\n%s", u.name, r)
			}
		}
	}
	for _, r := range append(e.otherHTTP.requests(), e.otherTLS.requests()...) {
		if strings.Contains(r.URI, "steer") || strings.Contains(r.URI, "userinfo") {
			t.Errorf("a steered request reached the non-gateway: %s", r.URI)
		}
	}
	// Clients, logs and OnRequest never saw one.
	for i, r := range responses {
		if strings.Contains(r, canaryPrefix) {
			t.Errorf("TOKEN LEAK in response %d to the client:\n%s", i, r)
		}
	}
	if logs := e.logs.String(); strings.Contains(logs, canaryPrefix) {
		t.Errorf("TOKEN LEAK in the log:\n%s", logs)
	} else if !strings.Contains(logs, "proxy request") {
		t.Errorf("no log lines captured: the log check proves nothing")
	}
	for _, en := range e.entries.all() {
		if strings.Contains(fmt.Sprintf("%+v", en), canaryPrefix) {
			t.Errorf("TOKEN LEAK in OnRequest entry %+v", en)
		}
	}
}
