package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/zalando/go-keyring"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker/demo"
)

func init() {
	registerBrowser("demo-allow", func(ctx context.Context, authURL string) error {
		status, body, err := demo.Browse(ctx, authURL, true)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("callback page answered %d: %.200s", status, body)
		}
		return nil
	})
	registerBrowser("demo-deny", func(ctx context.Context, authURL string) error {
		_, _, err := demo.Browse(ctx, authURL, false)
		return err
	})
	registerBrowser("fail", func(context.Context, string) error { return fmt.Errorf("this browser always fails") })
}

// demoSetup starts the embedded provider and writes a config with one
// uniquely named profile for it.
func demoSetup(t *testing.T, opts demo.Options) (p *demo.Provider, cfgPath, profile string) {
	t.Helper()
	requireKeychain(t)
	p, err := demo.Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	profile = uniqueProfile("e2e")
	cfgPath = demoConfig(t, p, profile, "")
	t.Cleanup(func() { _ = keyring.Delete("gatepass", profile) })
	return p, cfgPath, profile
}

// demoConfig writes a config whose one profile uses the demo provider;
// top holds extra top-level keys (e.g. listen).
func demoConfig(t *testing.T, p *demo.Provider, profile, top string) string {
	return writeConfig(t, fmt.Sprintf(`%s
default_profile = %q
[profiles.%s]
issuer = %q
client_id = %q
client_secret = %q
gateways = ["api.example.test"]
`, top, profile, profile, p.Issuer(), p.ClientID(), p.ClientSecret()))
}

func login(t *testing.T, cfg string) {
	t.Helper()
	_, stderr, code := runGatepass(t, nil, "--config", cfg, "login", "--browser-command", browserCommand("demo-allow"), "--timeout", "60s")
	if code != 0 {
		t.Fatalf("login exit %d\nstderr: %s\nbrowser: %s", code, stderr, browserLog(t))
	}
	// The sign-in's start address on the loopback listener, which redirects to the
	// issuer; the authorization URL itself, with its state, is never printed.
	if !regexp.MustCompile(`http://127\.0\.0\.1:\d+/\s`).MatchString(stderr) || strings.Contains(stderr, "state=") {
		t.Errorf("login did not print the sign-in's start address (and only it) to stderr: %s", stderr)
	}
	if !strings.Contains(stderr, "Signed in") {
		t.Errorf("login did not confirm the sign-in: %s", stderr)
	}
}

func TestE2ELoginTokenStatusLogout(t *testing.T) {
	p, cfg, profile := demoSetup(t, demo.Options{})
	login(t, cfg)

	// What went over the wire: PKCE S256 and a loopback redirect.
	q := p.Stats().LastAuthParams
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		t.Errorf("authorization request without PKCE S256: %v", q)
	}
	if !strings.HasPrefix(q.Get("redirect_uri"), "http://127.0.0.1:") || !strings.HasSuffix(q.Get("redirect_uri"), "/callback") {
		t.Errorf("redirect_uri = %q, want http://127.0.0.1:PORT/callback", q.Get("redirect_uri"))
	}
	if !strings.Contains(q.Get("scope"), "offline_access") {
		t.Errorf("scope %q lacks offline_access although discovery lists it", q.Get("scope"))
	}

	// The keychain holds the refresh token and metadata, nothing else.
	raw, err := keyring.Get("gatepass", profile)
	if err != nil {
		t.Fatalf("keychain entry: %v", err)
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(raw), &entry); err != nil {
		t.Fatalf("entry is not JSON: %v", err)
	}
	if entry["rt"] == "" || entry["email"] != "dev@example.test" {
		t.Errorf("entry = %v", entry)
	}
	if strings.Contains(raw, "eyJ") {
		t.Errorf("keychain entry holds a JWT; only the refresh token belongs there")
	}

	// token: a verified ID token for our client.
	out, stderr, code := runGatepass(t, nil, "--config", cfg, "token")
	if code != 0 {
		t.Fatalf("token exit %d: %s", code, stderr)
	}
	idTok := strings.TrimSpace(out)
	prov, err := oidc.NewProvider(context.Background(), p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.Verifier(&oidc.Config{ClientID: p.ClientID()}).Verify(context.Background(), idTok); err != nil {
		t.Errorf("printed ID token does not verify: %v", err)
	}

	// Each --format carries one access token, and only it. (Each run refreshes:
	// with no agent running, the CLI holds no access token between runs.)
	isToken := func(v string) bool {
		return v != "" && v != idTok && !strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == '"' })
	}
	inFuture := func(format, ts string) {
		exp, err := time.Parse(time.RFC3339, ts)
		if err != nil || !exp.After(time.Now()) {
			t.Errorf("token --format %s: expiry %q is not a future RFC 3339 time (%v)", format, ts, err)
		}
	}
	for _, format := range []string{"raw", "header", "json", "exec-credential"} {
		out, stderr, code := runGatepass(t, nil, "--config", cfg, "token", "--type", "access", "--format", format)
		if code != 0 {
			t.Errorf("token --format %s: exit %d, stderr %q", format, code, stderr)
			continue
		}
		switch format {
		case "raw":
			if tok, ok := strings.CutSuffix(out, "\n"); !ok || !isToken(tok) {
				t.Errorf("token --format raw: %q, want an access token and a newline", out)
			}
		case "header":
			tok, ok := strings.CutPrefix(out, "Authorization: Bearer ")
			if tok, ok2 := strings.CutSuffix(tok, "\n"); !ok || !ok2 || !isToken(tok) {
				t.Errorf("token --format header: %q, want one Authorization line with an access token", out)
			}
		case "json":
			var j struct{ Profile, Type, Token, Expiry string }
			if err := json.Unmarshal([]byte(out), &j); err != nil || j.Profile != profile || j.Type != "access_token" || !isToken(j.Token) {
				t.Errorf("token --format json: %v, %+v; want profile %s, type access_token and the token", err, j, profile)
			}
			inFuture(format, j.Expiry)
		case "exec-credential":
			var ec struct {
				APIVersion, Kind string
				Status           struct{ Token, ExpirationTimestamp string }
			}
			if err := json.Unmarshal([]byte(out), &ec); err != nil || ec.APIVersion != "client.authentication.k8s.io/v1" || ec.Kind != "ExecCredential" || !isToken(ec.Status.Token) {
				t.Errorf("token --format exec-credential: %v, %+v; want a v1 ExecCredential with the token in status.token", err, ec)
			}
			inFuture(format, ec.Status.ExpirationTimestamp)
		}
	}

	// status --json says who is signed in.
	out, _, code = runGatepass(t, nil, "--config", cfg, "status", "--json")
	var st struct {
		Profiles []struct {
			Profile, State, Email, Subject string
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status --json: exit %d, %v: %s", code, err, out)
	}
	if len(st.Profiles) != 1 || st.Profiles[0].State != "signed-in" || st.Profiles[0].Email != "dev@example.test" || st.Profiles[0].Subject == "" {
		t.Errorf("status = %+v", st)
	}

	// logout revokes at the issuer and clears the keychain.
	before := p.Stats().Revocations
	out, stderr, code = runGatepass(t, nil, "--config", cfg, "logout")
	if code != 0 {
		t.Fatalf("logout exit %d: %s", code, stderr)
	}
	// What logout did is a message: stderr, with stdout empty (DESIGN §2).
	if out != "" || !strings.Contains(stderr, "Signed out of profile \""+profile+"\": the refresh token was revoked at the issuer") {
		t.Errorf("logout: stdout %q, stderr %q; want nothing on stdout and the sign-out on stderr", out, stderr)
	}
	if p.Stats().Revocations != before+1 {
		t.Errorf("revocations = %d, want %d", p.Stats().Revocations, before+1)
	}
	if _, err := keyring.Get("gatepass", profile); err != keyring.ErrNotFound {
		t.Errorf("keychain entry after logout: %v", err)
	}
	_, stderr, code = runGatepass(t, nil, "--config", cfg, "token")
	if code != exitSignIn || !strings.Contains(stderr, "gatepass --config "+app.ShellQuote(cfg)+" login --profile "+profile) {
		t.Errorf("token after logout: exit %d (want 3), stderr %q", code, stderr)
	}
	out, _, _ = runGatepass(t, nil, "--config", cfg, "status")
	if !strings.Contains(out, "signed-out") {
		t.Errorf("status after logout: %s", out)
	}
}

// TestE2ERotationIsPersisted runs against a provider that rotates refresh
// tokens and revokes the whole family when an old one is reused: each
// `token` call spends the stored refresh token, so the second only works
// if the first saved the rotated one before using it again.
func TestE2ERotationIsPersisted(t *testing.T) {
	p, cfg, profile := demoSetup(t, demo.Options{RotateRefreshTokens: true, DetectReuse: true})
	login(t, cfg)
	first, _ := keyring.Get("gatepass", profile)
	var seen []string
	for i := range 3 {
		out, stderr, code := runGatepass(t, nil, "--config", cfg, "token", "--type", "access")
		if code != 0 {
			t.Fatalf("token #%d: exit %d: %s", i, code, stderr)
		}
		seen = append(seen, strings.TrimSpace(out))
	}
	if seen[0] == seen[1] || seen[1] == seen[2] {
		t.Errorf("access tokens did not change between refreshes")
	}
	now, _ := keyring.Get("gatepass", profile)
	if now == first {
		t.Errorf("keychain entry unchanged after rotation")
	}
	if p.Stats().InvalidGrants != 0 {
		t.Errorf("provider saw %d invalid_grant: a rotated token was reused", p.Stats().InvalidGrants)
	}
}

// TestE2ESignInRequiredAfterRevocation: when the issuer drops the refresh
// token (password change, admin revoke), `token` exits 3 with the fix.
func TestE2ESignInRequiredAfterRevocation(t *testing.T) {
	p, cfg, profile := demoSetup(t, demo.Options{})
	login(t, cfg)
	p.RevokeAll()
	out, stderr, code := runGatepass(t, nil, "--config", cfg, "token")
	if code != exitSignIn {
		t.Fatalf("exit %d, want 3; stderr %s", code, stderr)
	}
	if out != "" {
		t.Errorf("stdout not empty: %q", out)
	}
	if !strings.Contains(stderr, "run `gatepass --config "+app.ShellQuote(cfg)+" login --profile "+profile+"`") {
		t.Errorf("stderr lacks the fix for this config: %s", stderr)
	}
	if strings.Contains(stderr, "level=") {
		t.Errorf("token's stderr has a log line besides the error:\n%s", stderr)
	}
	// The refusal outlives the process: status (no agent) says so, and the
	// next token call does not spend the dead refresh token again.
	refreshes := p.Stats().Refreshes
	out, stderr, code = runGatepass(t, nil, "--config", cfg, "status")
	if code != 0 || !regexp.MustCompile(`(?m)^`+profile+` +sign-in-required .*no longer accepts the refresh token`).MatchString(out) {
		t.Errorf("status after the issuer refused the refresh token: exit %d\n%s%s\nwant sign-in-required and why", code, out, stderr)
	}
	if _, stderr, code = runGatepass(t, nil, "--config", cfg, "token"); code != exitSignIn || !strings.Contains(stderr, "no longer accepts") {
		t.Errorf("second token call: exit %d, stderr %s; want 3 and the reason", code, stderr)
	}
	if n := p.Stats().Refreshes; n != refreshes {
		t.Errorf("refresh requests %d -> %d: a later process spent the refused refresh token again", refreshes, n)
	}
	// Signing out of a session the issuer already ended is a clean sign-out.
	_, stderr, code = runGatepass(t, nil, "--config", cfg, "logout")
	if code != 0 || !strings.Contains(stderr, "the issuer had already revoked the refresh token") {
		t.Errorf("logout after the issuer revoked: exit %d, stderr %s", code, stderr)
	}
}

// TestE2ETokenShortLived: with tokens that live a minute (`gatepass demo
// --token-ttl 1m`, or an issuer that short), `gatepass token` without --min-ttl
// prints the token it holds; an explicit --min-ttl 1m is a demand it cannot meet.
func TestE2ETokenShortLived(t *testing.T) {
	p, cfg, _ := demoSetup(t, demo.Options{AccessTTL: time.Minute, IDTokenTTL: time.Minute})
	login(t, cfg)
	for _, typ := range []string{"id", "access"} {
		out, stderr, code := runGatepass(t, nil, "--config", cfg, "token", "--type", typ)
		if code != 0 || strings.TrimSpace(out) == "" {
			t.Errorf("token --type %s with 1-minute tokens: exit %d, %d bytes out, stderr %s; want the token", typ, code, len(out), stderr)
		}
	}
	refreshes := p.Stats().Refreshes
	_, stderr, code := runGatepass(t, nil, "--config", cfg, "token", "--min-ttl", "1m")
	if code != 1 || !strings.Contains(stderr, "shorter than the 1m0s asked for") {
		t.Errorf("token --min-ttl 1m with 1-minute tokens: exit %d, stderr %s; want 1 and the --min-ttl message", code, stderr)
	}
	if n := p.Stats().Refreshes; n != refreshes+1 {
		t.Errorf("token --min-ttl 1m: %d refreshes, want one try", n-refreshes)
	}
}

func TestE2ELoginFailures(t *testing.T) {
	cases := map[string]struct {
		browser string
		setup   func(p *demo.Provider)
		args    []string
		want    string
		code    int
	}{
		"cancelled in the browser": {browser: "demo-deny", want: "cancelled", code: 1},
		"token endpoint 500 HTML": {
			browser: "demo-allow",
			setup:   func(p *demo.Provider) { p.FailNext("token", 500, "text/html", "<html>oops</html>") },
			want:    "token endpoint answered HTTP 500", code: 1,
		},
		"ID token with a bad signature": {
			browser: "demo-allow",
			setup:   func(p *demo.Provider) { p.Tamper(demo.TamperBadSignature) },
			want:    "ID token verification", code: 1,
		},
		"ID token for another audience": {
			browser: "demo-allow",
			setup:   func(p *demo.Provider) { p.Tamper(demo.TamperWrongAudience) },
			want:    "ID token verification", code: 1,
		},
		"expired ID token": {
			browser: "demo-allow",
			setup:   func(p *demo.Provider) { p.Tamper(demo.TamperExpired) },
			want:    "expired", code: 1,
		},
		"discovery 404": {
			browser: "demo-allow",
			setup:   func(p *demo.Provider) { p.FailNext("discovery", 404, "text/plain", "not found") },
			want:    "discovery", code: 1,
		},
		"discovery garbage JSON": {
			browser: "demo-allow",
			setup:   func(p *demo.Provider) { p.FailNext("discovery", 200, "application/json", "{not json") },
			want:    "discovery", code: 1,
		},
		"browser command fails": {
			browser: "fail", args: []string{"--timeout", "3s"},
			want: "Could not open a browser", code: 1,
		},
		"issuer slower than the timeout": {
			browser: "demo-allow", args: []string{"--timeout", "2s"},
			setup: func(p *demo.Provider) { p.SetDelay("token", 5*time.Second) },
			want:  "timed out", code: 1,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p, cfg, profile := demoSetup(t, demo.Options{})
			if tc.setup != nil {
				tc.setup(p)
			}
			args := append([]string{"--config", cfg, "login", "--browser-command", browserCommand(tc.browser)}, tc.args...)
			out, stderr, code := runGatepass(t, nil, args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr %q lacks %q\nbrowser: %s", code, tc.code, stderr, tc.want, browserLog(t))
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if _, err := keyring.Get("gatepass", profile); err != keyring.ErrNotFound {
				t.Errorf("a failed sign-in left a keychain entry (err %v)", err)
			}
		})
	}
}

func TestCLIUsageAndConfigErrors(t *testing.T) {
	bad := writeConfig(t, "listen = \"0.0.0.0:8787\"\n[profiles.w]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\n")
	good := writeConfig(t, "[profiles.w]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\ngateways = [\"api.team.example\"]\n")
	twoProfiles := writeConfig(t, "[profiles.a]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\n[profiles.b]\nissuer = \"https://accounts.google.com\"\nclient_id = \"y\"\n")
	cases := map[string]struct {
		args []string
		code int
		want string
	}{
		"unknown command":               {[]string{"frobnicate"}, exitUsage, "unknown command"},
		"bad format":                    {[]string{"--config", bad, "token", "--format", "xml"}, exitUsage, "--format"},
		"non-loopback listen":           {[]string{"--config", bad, "status"}, exitUsage, bad + ":1"},
		"missing config file":           {[]string{"--config", "/nonexistent/gatepass.toml", "token"}, exitUsage, "/nonexistent/gatepass.toml"},
		"version":                       {[]string{"version"}, exitOK, ""},
		"stray argument":                {[]string{"status", "extra"}, exitUsage, "unexpected argument"},
		"bad callback port":             {[]string{"--config", bad, "login", "--callback-port", "70000"}, exitUsage, "--callback-port"},
		"unknown login flag":            {[]string{"login", "--frob"}, exitUsage, "frob"},
		"profile not in config":         {[]string{"--config", writeConfig(t, "[profiles.w]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\n"), "--profile", "nope", "token"}, exitUsage, "nope"},
		"login: profile not in config":  {[]string{"--config", good, "--profile", "nope", "login", "--no-browser"}, exitUsage, `unknown profile "nope"`},
		"login: no default profile":     {[]string{"--config", twoProfiles, "login", "--no-browser"}, exitUsage, "default"},
		"proxy --listen not loopback":   {[]string{"--config", good, "proxy", "--listen", "0.0.0.0:9999"}, exitUsage, "every network interface"},
		"proxy --listen bad port":       {[]string{"--config", good, "proxy", "--listen", "127.0.0.1:99999"}, exitUsage, "99999"},
		"gui --listen not loopback":     {[]string{"--config", good, "gui", "--listen", "0.0.0.0:9999"}, exitUsage, "every network interface"},
		"gui --demo --listen bad port":  {[]string{"gui", "--demo", "--listen", "127.0.0.1:99999"}, exitUsage, "99999"},
		"doctor without a config":       {[]string{"--config", "/nonexistent/gatepass.toml", "doctor"}, exitUsage, "/nonexistent/gatepass.toml"},
		"token --type unknown":          {[]string{"--config", "/nonexistent/gatepass.toml", "token", "--type", "foo"}, exitUsage, "use id or access"},
		"proxy --profile":               {[]string{"--config", good, "--profile", "w", "proxy"}, exitUsage, "every profile"},
		"ca --profile":                  {[]string{"--config", good, "ca", "path", "--profile", "w"}, exitUsage, "every profile"},
		"doctor: profile not in config": {[]string{"--config", good, "--profile", "wrok", "doctor"}, exitUsage, `unknown profile "wrok"`},
		"login --timeout 0":             {[]string{"--config", good, "login", "--timeout", "0s"}, exitUsage, "--timeout 0s"},
		"login --timeout negative":      {[]string{"--config", good, "login", "--timeout", "-1s"}, exitUsage, "--timeout -1s"},
		"--config is a directory":       {[]string{"--config", t.TempDir(), "status"}, exitUsage, "is a directory, not a config file"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, stderr, code := runGatepass(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d (want %d); stderr %q lacks %q", code, tc.code, stderr, tc.want)
			}
			if strings.Count(stderr, "no config file") > 1 {
				t.Errorf("the message repeats itself: %q", stderr)
			}
		})
	}
}

// TestE2EDoctorClockSkew: an issuer whose clock (its Date header) is ten minutes
// ahead fails the issuer check, with the skew and the fix.
func TestE2EDoctorClockSkew(t *testing.T) {
	_, cfg, _ := demoSetup(t, demo.Options{Now: func() time.Time { return time.Now().Add(10 * time.Minute) }})
	out, stderr, code := runGatepass(t, nil, "--config", cfg, "doctor")
	if code != exitFailure || !strings.Contains(out, "FAIL  issuer") || !regexp.MustCompile(`clock is -(9m5\d|10m\d)s off`).MatchString(out) || !strings.Contains(out, "sync the clock") {
		t.Errorf("doctor with a skewed issuer clock: exit %d\n%s%s", code, out, stderr)
	}
}

// TestE2ETrailingSlashIssuer: `issuer = "http://…/"` for a provider that names
// itself with the "/" (Auth0): doctor passes and a sign-in and a token work.
func TestE2ETrailingSlashIssuer(t *testing.T) {
	_, cfg, _ := demoSetup(t, demo.Options{IssuerTrailingSlash: true})
	out, stderr, code := runGatepass(t, nil, "--config", cfg, "doctor")
	if code != 0 || !strings.Contains(out, "ok    issuer") {
		t.Errorf("doctor: exit %d\n%s%s", code, out, stderr)
	}
	login(t, cfg)
	if tok, stderr, code := runGatepass(t, nil, "--config", cfg, "token"); code != 0 || !strings.HasPrefix(tok, "eyJ") {
		t.Errorf("token: exit %d, %s", code, stderr)
	}
}

// TestE2EDoctorIssuerMismatch: discovery that answers 200 but names another
// issuer fails doctor's issuer check — as it fails every sign-in — with the
// name to put in the config.
func TestE2EDoctorIssuerMismatch(t *testing.T) {
	requireKeychain(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"issuer":"https://login.elsewhere.example","authorization_endpoint":"https://login.elsewhere.example/a","token_endpoint":"https://login.elsewhere.example/t","jwks_uri":"https://login.elsewhere.example/j"}`)
	}))
	defer srv.Close()
	cfg := writeConfig(t, fmt.Sprintf("[profiles.w]\nissuer = %q\nclient_id = \"x\"\n", srv.URL))
	out, stderr, code := runGatepass(t, nil, "--config", cfg, "doctor")
	if code != exitFailure || !strings.Contains(out, "FAIL  issuer") || !strings.Contains(out, "set `issuer` of profile w to \"https://login.elsewhere.example\" exactly") {
		t.Errorf("doctor with a mismatched issuer: exit %d\n%s%s", code, out, stderr)
	}
}

func TestE2EDoctor(t *testing.T) {
	p, cfg, _ := demoSetup(t, demo.Options{})
	out, stderr, code := runGatepass(t, nil, "--config", cfg, "doctor")
	users := "ok    users      only uid " + strconv.Itoa(os.Getuid()) + " "
	if os.Getuid() == 0 {
		users = "ok    users      only root's processes may use the proxy"
	}
	if code != 0 || !strings.Contains(out, "ok    keychain") || !strings.Contains(out, "ok    issuer") || !strings.Contains(out, "ok    ca") || !strings.Contains(out, users) {
		t.Errorf("doctor on a healthy setup: exit %d\n%s%s", code, out, stderr)
	}
	p.Close()
	out, _, code = runGatepass(t, nil, "--config", cfg, "doctor")
	if code != exitFailure || !strings.Contains(out, "FAIL  issuer") {
		t.Errorf("doctor with the issuer down: exit %d\n%s", code, out)
	}
}

// TestE2ELoginNoBrowser: with --no-browser nothing is opened; the user
// copies the URL from stderr into a browser elsewhere (here: the scripted
// one), and the sign-in completes.
func TestE2ELoginNoBrowser(t *testing.T) {
	_, cfg, _ := demoSetup(t, demo.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatepassBin, "--config", cfg, "login", "--no-browser", "--browser-command", browserCommand("fail"))
	cmd.Env = testEnv(t)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var authURL string
	var seen strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		seen.WriteString(line + "\n")
		// The start address on the loopback listener, which redirects to the issuer.
		if regexp.MustCompile(`^http://127\.0\.0\.1:\d+/$`).MatchString(line) {
			authURL = line
			break
		}
	}
	if authURL == "" {
		t.Fatalf("no sign-in address on stderr:\n%s", seen.String())
	}
	status, body, err := demo.Browse(ctx, authURL, true)
	if err != nil || status != http.StatusOK {
		t.Fatalf("browsing the printed URL: %d %v %.200s", status, err, body)
	}
	_, _ = io.Copy(&seen, stderr) // the rest, until gatepass exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("login --no-browser: %v\n%s", err, seen.String())
	}
	if strings.Contains(browserLog(t), "browser") {
		t.Errorf("--no-browser still ran the browser command: %s", browserLog(t))
	}
	if _, _, code := runGatepass(t, nil, "--config", cfg, "token"); code != 0 {
		t.Errorf("token after login --no-browser: exit %d", code)
	}
}

// TestCLIHelp: --help, -h and help print the usage on stdout and exit 0, for the
// program and for a command.
func TestCLIHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"token", "--help"}, {"proxy", "-h"}} {
		stdout, stderr, code := runGatepass(t, nil, args...)
		if code != exitOK || !strings.Contains(strings.ToLower(stdout), "usage") || stderr != "" {
			t.Errorf("%v: exit %d, stdout %.60q, stderr %q; want the usage on stdout and exit 0", args, code, stdout, stderr)
		}
	}
}

// TestE2ETwoConfigsOneProfileName: the keychain account is the profile's name, so
// two configs with a profile of the same name share one sign-in. Signing in with the
// second says that it replaced the first's, and the first's status says at once that
// its sign-in belongs to another issuer (not "signed in" until a refresh fails).
func TestE2ETwoConfigsOneProfileName(t *testing.T) {
	p1, cfg1, profile := demoSetup(t, demo.Options{})
	login(t, cfg1)
	p2, err := demo.Start("127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p2.Close() })
	cfg2 := demoConfig(t, p2, profile, "")
	_, stderr, code := runGatepass(t, nil, "--config", cfg2, "login", "--browser-command", browserCommand("demo-allow"), "--timeout", "60s")
	if code != 0 || !strings.Contains(stderr, "It replaced the sign-in stored under that name for "+p1.Issuer()) {
		t.Fatalf("second login: exit %d, stderr %s", code, stderr)
	}
	out, _, _ := runGatepass(t, nil, "--config", cfg1, "status")
	if !strings.Contains(out, "sign-in-required") || !strings.Contains(out, "belongs to another issuer or client ID ("+p2.Issuer()) {
		t.Errorf("status of the first config:\n%s", out)
	}
	if _, stderr, code := runGatepass(t, nil, "--config", cfg1, "token"); code != exitSignIn || !strings.Contains(stderr, "another config has a profile of this name") {
		t.Errorf("token of the first config: exit %d, stderr %s", code, stderr)
	}
}
