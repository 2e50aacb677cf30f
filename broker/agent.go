package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// The agent's control socket (DESIGN §1): one process owns a config's
// tokens (the desktop app or `gatepass proxy`); other gatepass processes
// ask it over a Unix socket instead of spending the refresh token
// themselves. The socket lives in a 0700 directory and is itself 0600, so
// only the same OS user can connect, and no web page can reach it.

// ControlSocketPath returns the socket path for a config file: one agent
// per config, so `--config other.toml` never talks to the wrong agent.
func ControlSocketPath(configPath string) (string, error) {
	abs, err := filepath.Abs(configPath)
	if err != nil {
		return "", err
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		if dir, err = os.UserCacheDir(); err != nil {
			return "", err
		}
	}
	sum := sha256.Sum256([]byte(abs))
	// Unix socket paths are limited to ~104 bytes; keep the name short.
	return filepath.Join(dir, "gatepass", "agent-"+hex.EncodeToString(sum[:6])+".sock"), nil
}

// ServeControl serves the control API on a Unix socket at path until ctx
// ends. A stale socket from a crashed agent is replaced; a live one means
// another agent already owns this config, which is an error.
func ServeControl(ctx context.Context, b *Broker, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create the control socket directory: %w", err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("restrict the control socket directory: %w", err)
	}
	// The socket's lock is held for the agent's whole life: of two agents starting at
	// once for one config, the second finds it taken, instead of both seeing no live
	// socket and the second replacing the first one's (or, on shutdown, removing it).
	lock := flock.New(path + ".lock")
	if ok, err := lock.TryLock(); err != nil {
		return fmt.Errorf("lock the control socket %s: %w", lock.Path(), err)
	} else if !ok {
		return fmt.Errorf("another gatepass agent is already running for this config (lock %s); stop it first", lock.Path())
	}
	if c := (AgentClient{Path: path}); c.Alive(ctx) {
		_ = lock.Unlock()
		return fmt.Errorf("another gatepass agent is already running for this config (socket %s); stop it first", path)
	}
	_ = os.Remove(path) // a crashed agent's: its lock went with its process
	ln, err := net.Listen("unix", path)
	if err != nil {
		_ = lock.Unlock()
		return fmt.Errorf("listen on the control socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // removed below, while the lock is held
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		_ = lock.Unlock()
		return fmt.Errorf("restrict the control socket: %w", err)
	}
	srv := &http.Server{Handler: controlHandler(b), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = os.Remove(path)
		_ = lock.Unlock()
	}()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// controlPing is the wire form of a ping answer; Proxy is where the agent's proxy
// listens, empty when it does not.
type controlPing struct {
	Agent string `json:"agent"`
	PID   int    `json:"pid"`
	Proxy string `json:"proxy,omitempty"`
}

// controlToken is the wire form of a token answer.
type controlToken struct {
	Kind   TokenKind `json:"kind"`
	Value  string    `json:"value"`
	Expiry time.Time `json:"expiry"`
}

// controlError is the wire form of an error; SignIn marks ErrSignInRequired, and
// Reason is then the agent's SignInRequiredError.Reason (the issuer's invalid_grant
// or invalid_rapt, "not signed in", …), so the CLI tells the user why, not only that.
type controlError struct {
	Error   string `json:"error"`
	SignIn  bool   `json:"sign_in_required,omitempty"`
	Profile string `json:"profile,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

func controlHandler(b *Broker) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, r *http.Request) {
		writeControl(w, http.StatusOK, controlPing{Agent: "gatepass", PID: os.Getpid(), Proxy: b.ownProxyAddr()})
	})
	mux.HandleFunc("POST /v1/show", func(w http.ResponseWriter, r *http.Request) {
		show := b.showWindow.Load()
		if show == nil {
			writeControl(w, http.StatusConflict, controlError{Error: fmt.Sprintf(
				"`gatepass proxy` (pid %d) already runs for this config and has no window; stop it to use the app, or keep using it from the terminal", os.Getpid())})
			return
		}
		(*show)()
		writeControl(w, http.StatusOK, map[string]string{})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeControl(w, http.StatusOK, b.Statuses())
	})
	mux.HandleFunc("GET /v1/ca", b.serveCA)
	mux.HandleFunc("GET /v1/token", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		kind, err := ParseTokenKind(q.Get("kind"))
		if err != nil {
			writeControl(w, http.StatusBadRequest, controlError{Error: err.Error()})
			return
		}
		minTTL, err := time.ParseDuration(q.Get("min_ttl"))
		if err != nil {
			writeControl(w, http.StatusBadRequest, controlError{Error: "min_ttl: " + err.Error()})
			return
		}
		tok, err := b.token(r.Context(), q.Get("profile"), kind, minTTL, q.Get("capped") == "1")
		if err != nil {
			var sr *SignInRequiredError
			ce := controlError{Error: err.Error()}
			if errors.As(err, &sr) {
				ce.SignIn, ce.Profile, ce.Reason = true, sr.Profile, sr.Reason
			}
			writeControl(w, http.StatusConflict, ce)
			return
		}
		writeControl(w, http.StatusOK, controlToken{Kind: tok.Kind, Value: tok.Value, Expiry: tok.Expiry})
	})
	// reload tells the agent that another process signed a profile in or
	// out, so it re-reads the keychain entry once.
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Reload(r.Context(), r.URL.Query().Get("profile")); err != nil {
			writeControl(w, http.StatusConflict, controlError{Error: err.Error()})
			return
		}
		writeControl(w, http.StatusOK, map[string]string{})
	})
	return mux
}

func writeControl(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Reload forgets what this process knows about a profile and reads its
// keychain entry again, then fetches fresh tokens if it is signed in.
func (b *Broker) Reload(ctx context.Context, profile string) error {
	s, err := b.session(profile)
	if err != nil {
		return err
	}
	s.refreshMu.Lock()
	s.signOut()
	s.mu.Lock()
	s.loaded = false
	s.mu.Unlock()
	s.refreshMu.Unlock()
	if err := b.loadEntry(s); err != nil {
		return err
	}
	b.publish(s.status())
	if s.status().State == StateSignedIn {
		if _, err := b.refresh(ctx, s, true); err != nil {
			return err
		}
	}
	return nil
}

// ErrNoAgent means no agent answers on the control socket.
var ErrNoAgent = errors.New("no gatepass agent running")

// AgentClient talks to a running agent.
type AgentClient struct {
	Path string
}

func (c AgentClient) http() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.Path)
		},
	}}
}

func (c AgentClient) do(ctx context.Context, method, path string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoAgent, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var ce controlError
		if json.Unmarshal(body, &ce) != nil || ce.Error == "" {
			if resp.StatusCode == http.StatusNotFound {
				// The mux's own 404: an agent from an older gatepass, without this request.
				return fmt.Errorf("gatepass agent answered HTTP 404 to %s: %w", path, errors.ErrUnsupported)
			}
			return fmt.Errorf("gatepass agent answered HTTP %d", resp.StatusCode)
		}
		if ce.SignIn {
			// The agent's reason, as its own `gatepass status` line says it; it is
			// printed to a terminal, so without control characters.
			reason := printable(ce.Reason, 1000)
			if reason == "" { // an agent from before the reason went over the socket
				reason = "the running gatepass agent has no valid sign-in; `gatepass status` says why"
			}
			return &SignInRequiredError{Profile: ce.Profile, Reason: reason}
		}
		return errors.New(ce.Error)
	}
	return json.Unmarshal(body, out)
}

// Alive reports whether an agent answers.
func (c AgentClient) Alive(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var v map[string]any
	return c.do(ctx, http.MethodGet, "/v1/ping", nil, &v) == nil
}

// Proxy asks the agent where its proxy listens, in one ping: alive is false when no
// agent answers, and addr is "" when its proxy is not running (the desktop app's
// proxy switched off).
func (c AgentClient) Proxy(ctx context.Context) (addr string, alive bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var p controlPing
	if c.do(ctx, http.MethodGet, "/v1/ping", nil, &p) != nil {
		return "", false
	}
	return p.Proxy, true
}

// Token asks the agent for a token (Broker.Token); ErrNoAgent when none runs.
func (c AgentClient) Token(ctx context.Context, profile string, kind TokenKind, minTTL time.Duration) (Token, error) {
	return c.token(ctx, profile, kind, minTTL, false)
}

// FreshToken asks the agent for a token with margin capped (Broker.FreshToken).
func (c AgentClient) FreshToken(ctx context.Context, profile string, kind TokenKind, margin time.Duration) (Token, error) {
	return c.token(ctx, profile, kind, margin, true)
}

func (c AgentClient) token(ctx context.Context, profile string, kind TokenKind, minTTL time.Duration, capped bool) (Token, error) {
	q := url.Values{"profile": {profile}, "kind": {string(kind)}, "min_ttl": {minTTL.String()}}
	if capped {
		q.Set("capped", "1")
	}
	var t controlToken
	err := c.do(ctx, http.MethodGet, "/v1/token", q, &t)
	return Token{Kind: t.Kind, Value: t.Value, Expiry: t.Expiry}, err
}

// Statuses asks the agent for every profile's status.
func (c AgentClient) Statuses(ctx context.Context) ([]ProfileStatus, error) {
	var st []ProfileStatus
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// ShowWindow asks the agent to bring its window forward; the error of a
// headless agent says so. ErrNoAgent when none runs.
func (c AgentClient) ShowWindow(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var v map[string]string
	return c.do(ctx, http.MethodPost, "/v1/show", nil, &v)
}

// Reload tells the agent to re-read a profile's keychain entry.
func (c AgentClient) Reload(ctx context.Context, profile string) error {
	var v map[string]string
	return c.do(ctx, http.MethodPost, "/v1/reload", url.Values{"profile": {profile}}, &v)
}
