package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/proxy"
)

// noTokens is a token source without gateways: the proxy only forwards.
type noTokens struct{}

func (noTokens) Gateway(string, string) (proxy.Gateway, bool) { return proxy.Gateway{}, false }
func (noTokens) TokenFor(context.Context, string, string) (proxy.Token, error) {
	return proxy.Token{}, errors.New("no tokens in this test")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// takenAddr holds a loopback port for the test's duration.
func takenAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

func serves(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestAppProxySetAddr(t *testing.T) {
	var built []string
	px := newAppProxy(takenAddr(t), func(listen string, onRequest func(proxy.RequestLog)) (*proxy.Server, error) {
		built = append(built, listen)
		return proxy.New(proxy.Options{Listen: listen, Tokens: noTokens{}, OnRequest: onRequest})
	})
	t.Cleanup(func() { px.SetRunning(false) })

	// The configured port is taken: the proxy stays off.
	if err := px.SetRunning(true); !errors.Is(err, syscall.EADDRINUSE) || px.Running() {
		t.Fatalf("SetRunning(true) on a taken port = %v, running %v; want EADDRINUSE and off", err, px.Running())
	}

	// Not loopback: refused, nothing changes.
	before := px.Addr()
	for _, bad := range []string{"0.0.0.0:8788", ":8788", "192.168.1.5:8788", "127.0.0.1"} {
		if err := px.SetAddr(bad); err == nil || px.Addr() != before {
			t.Errorf("SetAddr(%q) = %v, address now %s; want an error and %s", bad, err, px.Addr(), before)
		}
	}

	// Stopped: the address is recorded, the proxy stays off until switched on.
	b := freeAddr(t)
	if err := px.SetAddr(b); err != nil || px.Addr() != b || px.Running() {
		t.Fatalf("SetAddr(%s) while stopped = %v, addr %s running %v", b, err, px.Addr(), px.Running())
	}
	if err := px.SetRunning(true); err != nil || !serves(b) {
		t.Fatalf("SetRunning(true) at %s = %v, serving %v", b, err, serves(b))
	}

	// Running, new port taken too: keeps serving where it was.
	c := takenAddr(t)
	if err := px.SetAddr(c); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("SetAddr(taken %s) = %v, want EADDRINUSE", c, err)
	}
	if px.Addr() != b || !px.Running() || !serves(b) {
		t.Fatalf("after a failed move: addr %s running %v serving %v; want still %s", px.Addr(), px.Running(), serves(b), b)
	}

	// Running, free port: moves, the old port is released.
	d := freeAddr(t)
	if err := px.SetAddr(d); err != nil {
		t.Fatalf("SetAddr(%s) = %v", d, err)
	}
	if px.Addr() != d || !serves(d) || serves(b) {
		t.Errorf("after the move: addr %s, serving new %v old %v; want %s only", px.Addr(), serves(d), serves(b), d)
	}
	if last := built[len(built)-1]; last != d {
		t.Errorf("last proxy built for %s, want %s (agentOptions.listen)", last, d)
	}
	if err := px.SetRunning(false); err != nil || px.Running() || serves(d) {
		t.Errorf("SetRunning(false) = %v, running %v serving %v", err, px.Running(), serves(d))
	}
	if !strings.HasPrefix(px.Addr(), "127.0.0.1:") {
		t.Errorf("stopped proxy reports %q", px.Addr())
	}
}

// TestDrainTimesOut: a request still in flight when the drain time runs out is cut
// off, and drain says so with the time it waited (the second Ctrl-C's branch is
// TestE2EProxySecondInterrupt's).
func TestDrainTimesOut(t *testing.T) {
	srv, err := proxy.New(proxy.Options{Listen: freeAddr(t), Tokens: noTokens{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	got := slowGetThrough(t, srv.Addr())
	defer func(d time.Duration) { drainTime = d }(drainTime)
	drainTime = 200 * time.Millisecond
	var stderr bytes.Buffer
	err = drain(&env{stdout: io.Discard, stderr: &stderr}, srv)
	if err == nil || err.Error() != "requests still in flight after 200ms were cut off" {
		t.Errorf("drain past its time = %v", err)
	}
	if !strings.Contains(stderr.String(), "draining in-flight requests (up to 200ms; Ctrl-C again stops now)") {
		t.Errorf("drain's message: %q", stderr.String())
	}
	if err := <-got; err == nil {
		t.Error("the client read a whole body from a request the proxy cut off")
	}
}

// slowGetThrough starts a request through the proxy at proxyAddr to an upstream
// that sends its answer's head and never its body, and returns once the upstream
// has the request; got has the client's result when the request ends (an error
// when the proxy cut it off).
func slowGetThrough(t *testing.T, proxyAddr string) (got <-chan error) {
	t.Helper()
	release, started := make(chan struct{}), make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		started <- struct{}{}
		select { // the body never comes
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); slow.Close() })
	proxyURL, _ := url.Parse("http://" + proxyAddr)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	res := make(chan error, 1)
	go func() {
		resp, err := c.Get(slow.URL + "/slow")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		res <- err
	}()
	<-started
	return res
}
