package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/zalando/go-keyring"

	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/broker/demo"
)

// rolloverClock is the fake wall clock shared by the demo provider, the
// broker and the test's upstream: frozen until the test moves it, then it
// runs at rate× real time from wherever it was set, so tokens age quickly
// while requests in flight see only a few fake seconds pass.
type rolloverClock struct {
	mu     sync.Mutex
	base   time.Time // fake time at anchor
	anchor time.Time // real time of the last Set
	rate   float64   // fake seconds per real second
}

func (c *rolloverClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.Add(time.Duration(float64(time.Since(c.anchor)) * c.rate))
}

// Set moves the clock to fake time to (never backwards) and lets it run at rate.
func (c *rolloverClock) Set(to time.Time, rate float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.base.Add(time.Duration(float64(time.Since(c.anchor)) * c.rate))
	if to.Before(now) {
		to = now
	}
	c.base, c.anchor, c.rate = to, time.Now(), rate
}

// rolloverHit is one request the gateway received.
type rolloverHit struct {
	token string
	at    time.Time // fake time of receipt
}

// TestRolloverUnderLoadRealBroker: the real broker (as `gatepass proxy`
// builds it, through brokerTokens) in front of the demo provider, the real
// proxy in front of a plain-HTTP gateway, 32 goroutines sending requests
// without pause while the token rolls over three times:
//
//  1. proactively: the agent's Tick passes the refresh point (~80% of the
//     lifetime) while requests are served from memory;
//  2. on demand: no Tick, the token drops under the one minute the proxy
//     asks for, and all 32 callers reach the broker's slow path at once;
//  3. after a wake from sleep: both the refresh point and the one-minute
//     mark have passed, Tick and the 32 callers race for the refresh.
//
// Each rollover must cost exactly one refresh grant at the provider, no
// request may fail, and every request the gateway sees must carry an ID
// token that verifies and has not expired, the new one after each rollover.
func TestRolloverUnderLoadRealBroker(t *testing.T) {
	requireKeychain(t)
	start := time.Now()
	const (
		ttl     = 10 * time.Minute
		workers = 32
		crawl   = 100 // fake seconds per real second while tokens near a threshold
	)
	clk := &rolloverClock{base: time.Now(), anchor: time.Now()} // frozen (rate 0) until the load starts
	p, err := demo.Start("127.0.0.1:0", demo.Options{AccessTTL: ttl, IDTokenTTL: ttl, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	var (
		hitsMu sync.Mutex
		hits   []rolloverHit
	)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := rolloverHit{token: r.Header.Get("Authorization"), at: clk.Now()}
		hitsMu.Lock()
		hits = append(hits, h)
		hitsMu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer gw.Close()

	profile := uniqueProfile("rollover")
	cfgPath := writeConfig(t, fmt.Sprintf(`
[profiles.%s]
issuer = %q
client_id = %q
client_secret = %q
gateways = [%q]
plain_http = [%q]
inject = "id_token"
`, profile, p.Issuer(), p.ClientID(), p.ClientSecret(), hostOf(gw.URL), hostOf(gw.URL)))
	cfg, err := broker.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = keyring.Delete("gatepass", profile)
		_ = keyring.Delete(caService, newKeychainCA(broker.SystemKeychain{}, cfg).account)
	})
	login(t, cfgPath) // the real `gatepass login`, into the real keychain

	// The agent as startBroker builds it, with the fake clock, no jitter and
	// the test's lock directory (the control socket plays no part here).
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logBuf.String())
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	var stopped <-chan struct{} // the agent's refreshes write in the test's directory: wait for them
	defer func() {
		cancel()
		if stopped != nil {
			<-stopped
		}
	}()
	b, err := broker.New(cfg, broker.Deps{
		Keychain: broker.SystemKeychain{},
		Log:      log,
		Clock:    clk,
		Jitter:   func() float64 { return 0 },
		LockDir:  filepath.Join(testDir(t), "cache", "gatepass", "locks"),
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped = b.Start(ctx) // loads the sign-in and refreshes once
	expiry := func() time.Time { st, _ := b.Status(profile); return st.Expiry }
	for i := 0; expiry().IsZero(); i++ {
		if i == 500 {
			st, _ := b.Status(profile)
			t.Fatalf("the agent holds no token 5s after Start: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv, err := newProxy(b, cfg, agentOptions{listen: freeAddr(t), log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}()
	base := p.Stats().Refreshes
	refreshes := func() int { return p.Stats().Refreshes - base }

	// The load: each worker sends requests back to back until stopped.
	proxyURL, _ := url.Parse("http://" + srv.Addr())
	client := &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: workers},
		Timeout:   10 * time.Second,
	}
	defer client.CloseIdleConnections()
	var (
		sent, ok  atomic.Int64
		failMu    sync.Mutex
		failures  []string
		failCount atomic.Int64
	)
	fail := func(msg string) {
		if failCount.Add(1) <= 5 {
			failMu.Lock()
			failures = append(failures, msg)
			failMu.Unlock()
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad() // also when a phase fails the test
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/w%d/%d", gw.URL, w, n), nil)
				req.Header.Set("Authorization", "Bearer caller-set-must-be-replaced")
				sent.Add(1)
				resp, err := client.Do(req)
				if err != nil {
					fail(err.Error())
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ok" {
					fail(fmt.Sprintf("HTTP %d, read error %v: %.200s", resp.StatusCode, err, body))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	loadStart := time.Now()

	// ticker stands in for the agent's periodic Tick (every 5s of real
	// time in Start), run often because the fake clock runs fast.
	ticker := func() (stop func()) {
		done, exited := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(exited)
			for {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				case <-time.After(5 * time.Millisecond):
					b.Tick(ctx)
				}
			}
		}()
		return func() { close(done); <-exited }
	}
	// awaitRefresh waits until the provider has seen want refreshes in
	// all, failing once the fake clock passes limit; then keeps the load on
	// a little longer so a second, late refresh would be counted too.
	awaitRefresh := func(phase string, want int, limit time.Time) {
		t.Helper()
		for refreshes() < want {
			if clk.Now().After(limit) {
				t.Fatalf("%s: %d refreshes by %s before expiry, want %d", phase, refreshes(), expiry().Sub(clk.Now()).Round(time.Second), want)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		if got := refreshes(); got != want {
			t.Errorf("%s: the provider saw %d refresh grants in all, want %d (one per rollover)", phase, got, want)
		}
	}

	time.Sleep(100 * time.Millisecond) // load on the first token

	// 1. Proactive: just before the refresh point, with Tick running. The
	// one-minute mark stays ahead, so only Tick may refresh.
	exp := expiry()
	stopTicker := ticker()
	clk.Set(exp.Add(-ttl/5-10*time.Second), crawl)
	awaitRefresh("proactive refresh by Tick", 1, exp.Add(-65*time.Second))
	stopTicker()

	// 2. On demand: no Tick; the token drops under one minute of life.
	exp = expiry()
	clk.Set(exp.Add(-70*time.Second), crawl)
	awaitRefresh("on-demand refresh by 32 callers", 2, exp.Add(-40*time.Second))

	// 3. Wake from sleep: past the refresh point and the one-minute mark
	// at once (but before expiry, so requests in flight still hold a valid
	// token); Tick and the callers race.
	exp = expiry()
	stopTicker = ticker()
	clk.Set(exp.Add(-50*time.Second), crawl)
	awaitRefresh("refresh after a wake", 3, exp.Add(-30*time.Second))
	stopTicker()

	time.Sleep(100 * time.Millisecond) // load on the last token
	stopLoad()
	loadTime := time.Since(loadStart)

	// The broker's current token, without a refresh (it is fresh).
	cur, err := b.Token(ctx, profile, broker.IDToken, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	total := refreshes()

	hitsMu.Lock()
	got := append([]rolloverHit(nil), hits...)
	hitsMu.Unlock()
	t.Logf("%d requests sent, %d ok, %d failed, gateway received %d; %d refresh grants for 3 rollovers; load %s, test %s",
		sent.Load(), ok.Load(), failCount.Load(), len(got), total, loadTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	if n := failCount.Load(); n != 0 {
		t.Errorf("%d requests failed, e.g.:\n  %s", n, strings.Join(failures, "\n  "))
	}
	if total != 3 {
		t.Errorf("the provider saw %d refresh grants, want 3 (one per rollover)", total)
	}
	if st := p.Stats(); st.InvalidGrants != 0 {
		t.Errorf("the provider answered invalid_grant %d times", st.InvalidGrants)
	}
	if int64(len(got)) != ok.Load() {
		t.Errorf("the gateway received %d requests, the clients got %d answers", len(got), ok.Load())
	}

	// Every request carried a verifying ID token for our client, unexpired
	// when it arrived; the tokens, in order of first arrival, are one per
	// issue and the newest is what the broker holds now.
	prov, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		n           int
		first, last time.Time
	}
	byToken := map[string]*seen{}
	var order []string
	for _, h := range got {
		tok, found := strings.CutPrefix(h.token, "Bearer ")
		if !found {
			t.Fatalf("a request reached the gateway with Authorization %q", broker.Redacted(h.token))
		}
		s := byToken[tok]
		if s == nil {
			s = &seen{first: h.at}
			byToken[tok] = s
			order = append(order, tok)
		}
		s.n++
		s.last = h.at
	}
	for i, tok := range order {
		s := byToken[tok]
		v := prov.Verifier(&oidc.Config{ClientID: p.ClientID(), Now: func() time.Time { return s.last }})
		idt, err := v.Verify(ctx, tok)
		if err != nil {
			t.Errorf("token #%d (%s, %d requests) does not verify at its last arrival: %v", i, broker.Redacted(tok), s.n, err)
			continue
		}
		if !s.last.Before(idt.Expiry) {
			t.Errorf("token #%d reached the gateway %s after it expired", i, s.last.Sub(idt.Expiry))
		}
		t.Logf("token #%d %s: %d requests, arrived from %s to %s before expiry", i, broker.Redacted(tok), s.n,
			idt.Expiry.Sub(s.first).Round(time.Second), idt.Expiry.Sub(s.last).Round(time.Second))
	}
	if len(order) != 4 {
		t.Errorf("the gateway saw %d distinct tokens, want 4 (the first and one per rollover)", len(order))
	}
	if len(order) > 0 {
		if order[len(order)-1] != cur.Value || got[len(got)-1].token != "Bearer "+cur.Value {
			t.Errorf("the gateway's newest and last-received token is not the broker's current one")
		}
		if order[0] == cur.Value {
			t.Errorf("after the rollovers the gateway still receives the first token")
		}
	}
}
