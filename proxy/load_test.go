package proxy

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTokenRolloverUnderLoad: many concurrent requests (plain and intercepted) while the
// token expires. No request may fail or carry an expired token, and the proxy asks the
// source for the token exactly once per request that reaches a gateway. (The fake
// source serialises its own refresh, so its refresh count of 1 says little about the
// proxy; that the real broker refreshes exactly once under load is
// cmd/gatepass/rollover_test.go's.)
func TestTokenRolloverUnderLoad(t *testing.T) {
	e := newEnv(t)
	e.src.lifetime = 400 * time.Millisecond
	e.src.margin = 100 * time.Millisecond
	e.src.refreshLag = 20 * time.Millisecond
	e.src.TokenFor(t.Context(), "localhost", e.plainGW.port()) // first sign-in token
	e.src.lifetime = time.Hour                                 // the refreshed one lasts
	var bad, reached atomic.Int32
	check := func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "+canaryPrefix) {
			bad.Add(1)
		}
		io.WriteString(w, "ok")
	}
	e.plainGW.handler, e.tlsGW.handler = check, check
	c := e.client()
	var ok, failed atomic.Int32
	refreshed := func() bool {
		e.src.mu.Lock()
		defer e.src.mu.Unlock()
		return e.src.refreshes > 0
	}
	// Load until the token has rolled over and plenty of requests ran on
	// both sides of it; counted, not timed (the cap only stops a hang).
	const want = 400
	var afterRefresh atomic.Int32
	stop := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := e.plainGWURL()
			if i%2 == 1 {
				u = e.tlsGWURL()
			}
			for (ok.Load() < want || afterRefresh.Load() < want/4) && time.Now().Before(stop) {
				resp, err := c.Get(u + "/load")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				} else {
					ok.Add(1)
					if refreshed() {
						afterRefresh.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	e.src.mu.Lock()
	refreshes, calls := e.src.refreshes, e.src.calls-1 // less the sign-in above
	e.src.mu.Unlock()
	t.Logf("%d requests ok (%d after the refresh), %d failed, %d refreshes, %d token look-ups for %d requests at the gateways", ok.Load(), afterRefresh.Load(), failed.Load(), refreshes, calls, reached.Load())
	if n := int(reached.Load()); calls != n || n < want {
		t.Errorf("the proxy asked for the token %d times for %d requests that reached a gateway, want exactly once per request", calls, n)
	}
	if failed.Load() != 0 || bad.Load() != 0 {
		t.Errorf("%d failed requests, %d without a token", failed.Load(), bad.Load())
	}
	if ok.Load() < want || afterRefresh.Load() < want/4 {
		t.Errorf("the token did not roll over under load within 30s (%d requests, %d after the refresh)", ok.Load(), afterRefresh.Load())
	}
	if refreshes != 1 {
		t.Errorf("%d refreshes, want 1", refreshes)
	}
}

// TestStreaming64MiB pushes 64 MiB up and down through the plain and intercepted paths
// and checks that the heap stays far below the body size (bodies are streamed).
func TestStreaming64MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	const size = 64 << 20
	e := newEnv(t)
	sink := func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x %v", n, h.Sum(nil)[:4], err)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.Copy(w, io.LimitReader(zeros{}, size))
	}
	e.plainGW.handler, e.tlsGW.handler = sink, sink
	zsum := sha256.New()
	io.Copy(zsum, io.LimitReader(zeros{}, size))
	want := fmt.Sprintf("%d %x <nil>", size, zsum.Sum(nil)[:4])

	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	c := e.client()
	for _, u := range []string{e.plainGWURL(), e.tlsGWURL()} {
		req, _ := http.NewRequest(http.MethodPost, u+"/stream-in", io.LimitReader(zeros{}, size))
		req.ContentLength = -1 // chunked: nothing may buffer it to learn the length
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("upload through %s: upstream got %q, want %q", u, b, want)
		}
		resp, err = c.Get(u + "/download")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != size || err != nil {
			t.Errorf("download through %s: %d bytes, %v", u, n, err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("peak heap in use: %d MiB", peak.Load()>>20)
	if peak.Load() > 32<<20 {
		t.Errorf("peak heap %d MiB while streaming 64 MiB bodies: something buffers", peak.Load()>>20)
	}
}
