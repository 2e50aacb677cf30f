package broker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker/demo"
)

// TestControlSocketSignInReason: when the issuer refuses the agent's refresh token,
// a CLI asking the agent learns why (the issuer's invalid_rapt here) and what to run,
// as it would in-process (LESSONS: "sign-in required" with the reason), and never a
// token.
func TestControlSocketSignInReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	c, ctx := serveControl(t, e.b)
	e.login()
	tok, err := c.Token(ctx, testProfile, AccessToken, time.Minute)
	if err != nil {
		t.Fatalf("agent Token while signed in: %v", err)
	}
	raw, _ := e.kc.Get(KeychainService, testProfile)
	var entry struct {
		RT string `json:"rt"`
	}
	if err := json.Unmarshal([]byte(raw), &entry); err != nil || entry.RT == "" {
		t.Fatalf("keychain entry without a refresh token: %v", err)
	}

	e.idp.FailNext("token", http.StatusBadRequest, "application/json",
		`{"error":"invalid_rapt","error_description":"reauth related error (invalid_rapt)"}`)
	e.clock.Advance(2 * time.Hour)
	// The first call spends the refresh token and is refused; the second is
	// answered from the agent's sign-in-required state.
	for _, call := range []string{"refused now", "refused before"} {
		_, err := c.Token(ctx, testProfile, AccessToken, time.Minute)
		var sr *SignInRequiredError
		if !errors.As(err, &sr) || !errors.Is(err, ErrSignInRequired) {
			t.Fatalf("%s: %v, want a *SignInRequiredError", call, err)
		}
		msg := err.Error()
		for _, want := range []string{"reauthentication policy", "reauth related error (invalid_rapt)", "run `gatepass login --profile " + testProfile + "`"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: %q lacks %q", call, msg, want)
			}
		}
		if sr.Profile != testProfile || strings.Contains(msg, "no valid sign-in") {
			t.Errorf("%s: profile %q, message %q; want the agent's own reason", call, sr.Profile, msg)
		}
		if strings.Contains(msg, tok.Value) || strings.Contains(msg, entry.RT) {
			t.Errorf("%s: the message holds a token: %q", call, msg)
		}
	}
}

// TestControlSocketCA: the agent hands out the local CA certificate its proxy uses
// (SetCA), and says so when its proxy has made none yet; with no agent, ErrNoAgent.
func TestControlSocketCA(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{})
	path := controlSocketPath(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := (AgentClient{Path: path}).CA(ctx); !errors.Is(err, ErrNoAgent) {
		t.Errorf("CA with no agent: %v, want ErrNoAgent", err)
	}
	if err := ServeControl(ctx, e.b, path); err != nil {
		t.Fatal(err)
	}
	c := AgentClient{Path: path}
	if _, err := c.CA(ctx); err == nil || errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), "proxy is off or still starting") {
		t.Errorf("CA before the proxy was made: %v", err)
	}
	first := []byte("-----BEGIN CERTIFICATE-----\nfirst\n-----END CERTIFICATE-----\n")
	e.b.SetCA(AgentCA{CertPEM: first, Path: "/tmp/x/gatepass-ca.pem"})
	first[0] = 'X' // SetCA keeps its own copy
	got, err := c.CA(ctx)
	if err != nil || !strings.HasPrefix(string(got.CertPEM), "-----BEGIN CERTIFICATE-----\nfirst") || got.Path != "/tmp/x/gatepass-ca.pem" {
		t.Errorf("CA = %q at %q, %v", got.CertPEM, got.Path, err)
	}
	// The desktop app makes a new proxy when it is switched on again.
	e.b.SetCA(AgentCA{CertPEM: []byte("second"), Path: "/tmp/x/gatepass-ca.pem"})
	if got, err := c.CA(ctx); err != nil || string(got.CertPEM) != "second" {
		t.Errorf("CA after a second SetCA = %q, %v", got.CertPEM, err)
	}
	// Another broker's CA is its own.
	if _, ok := e.newBroker().ownCA(); ok {
		t.Errorf("a new broker has a CA it was never told about")
	}
}

// TestControlSocketOlderAgent: an agent from an older gatepass, which has no CA
// request and sends no reason with sign-in required: the CA request is
// errors.ErrUnsupported (the CLI says to restart it) and sign-in required still
// names the profile and the fix.
func TestControlSocketOlderAgent(t *testing.T) {
	t.Parallel()
	path := controlSocketPath(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/token", func(w http.ResponseWriter, r *http.Request) {
		writeControl(w, http.StatusConflict, map[string]any{"error": `profile "work": sign-in required`, "sign_in_required": true, "profile": "work"})
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	c := AgentClient{Path: path}
	ctx := context.Background()
	if _, err := c.CA(ctx); !errors.Is(err, errors.ErrUnsupported) || errors.Is(err, ErrNoAgent) {
		t.Errorf("CA from an older agent: %v, want errors.ErrUnsupported", err)
	}
	_, err = c.Token(ctx, "work", AccessToken, time.Minute)
	if !errors.Is(err, ErrSignInRequired) || !strings.Contains(err.Error(), "gatepass login --profile work") || !strings.Contains(err.Error(), "gatepass status") {
		t.Errorf("sign-in required from an older agent: %v", err)
	}
}
