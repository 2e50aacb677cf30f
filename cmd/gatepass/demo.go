package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/broker/demo"
	"github.com/gofrs/flock"
)

// demoEnv is a running demo: the identity provider, the sample gateway and
// a config that points a "demo" profile at them.
type demoEnv struct {
	Provider   *demo.Provider
	GatewayURL string
	ConfigPath string
	Config     *broker.Config
	gateway    *http.Server
}

func (d *demoEnv) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = d.gateway.Shutdown(ctx)
	_ = d.Provider.Close()
}

// demoProfile is the profile name of a demo config; the keychain account of its
// sign-in (DESIGN §4: account = profile name). While another demo runs, a new one
// takes "demo-2", "demo-3", … (demoProfileFor).
const demoProfile = "demo"

// maxDemoProfiles bounds the names demoProfileFor tries.
const maxDemoProfiles = 9

// demoProfileName is the name of the nth demo profile: "demo", "demo-2", ….
func demoProfileName(n int) string {
	if n == 1 {
		return demoProfile
	}
	return demoProfile + "-" + strconv.Itoa(n)
}

// isDemoProfileName reports whether name is one demoProfileFor gives.
func isDemoProfileName(name string) bool {
	for n := 1; n <= maxDemoProfiles; n++ {
		if name == demoProfileName(n) {
			return true
		}
	}
	return false
}

// demoLockDir holds the lock file each running demo keeps on its profile name (a
// variable for tests).
var demoLockDir = func() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	// Not the broker's lock directory: its <profile>.lock is the refresh lock of
	// the very profile the demo names.
	return filepath.Join(dir, "gatepass", "demos")
}

// demoProfileFor picks the profile name of a new demo: the first of "demo", "demo-2",
// … that no running demo holds (each keeps a lock file on its name while it runs,
// signed in or not) and whose keychain entry is free once a stale demo sign-in there
// is removed (a real issuer's profile of that name keeps its name). So two demos at
// once do not share, and overwrite, one sign-in. release lets the name go; the demo
// calls it when it ends. Without a lock directory only the keychain decides.
func demoProfileFor(kc broker.Keychain) (name string, release func()) {
	dir := demoLockDir()
	if dir != "" && os.MkdirAll(dir, 0o700) != nil {
		dir = ""
	}
	for n := 1; n <= maxDemoProfiles; n++ {
		name := demoProfileName(n)
		release := func() {}
		if dir != "" {
			fl := flock.New(filepath.Join(dir, name+".lock"))
			if ok, err := fl.TryLock(); err != nil || !ok {
				continue // a demo runs with this name
			}
			release = func() { _ = fl.Unlock() }
		}
		free, err := claimDemoName(kc, name)
		if free || err != nil && n == 1 { // a keychain that cannot be read: the sign-in will say so
			return name, release
		}
		release()
	}
	return demoProfile, func() {}
}

// forget removes what this demo leaves behind once its issuer is gone: its profile's
// sign-in (a refresh token of an issuer that no longer exists), the local CA of its
// config (one keychain entry per config file), and the config directory when the demo
// made it. A sign-in of that name from another issuer is not this demo's and stays.
func (d *demoEnv) forget(kc broker.Keychain, dir string) {
	st := broker.Store{Keychain: kc}
	name := d.Config.Profiles[0].Name
	if e, err := st.Load(name); err == nil && e.Issuer == d.Provider.Issuer() {
		_ = st.Delete(name)
	}
	_ = kc.Delete(caService, newKeychainCA(kc, d.Config).account)
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// claimDemoName reports whether the keychain leaves profile name free for a new demo,
// in one read: no sign-in of that name, or one left by an earlier demo that did not end
// cleanly, which it deletes (so the new demo does not open with "the stored sign-in
// belongs to another issuer"). Such a sign-in is stale when its issuer was a loopback
// demo (http://127.0.0.1, the demo's client) and nothing listens there any more; a
// profile of that name of a real issuer, or of a demo still running, keeps the name.
// err is a keychain that cannot be read.
func claimDemoName(kc broker.Keychain, name string) (free bool, err error) {
	st := broker.Store{Keychain: kc}
	e, err := st.Load(name)
	switch {
	case errors.Is(err, broker.ErrNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	u, err := url.Parse(e.Issuer)
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || e.ClientID != demo.DefaultClientID {
		return false, nil // not a demo's sign-in (a local issuer of the user's own, say)
	}
	if c, err := net.DialTimeout("tcp", u.Host, 300*time.Millisecond); err == nil {
		_ = c.Close() // something answers there: perhaps that demo still runs
		return false, nil
	}
	if err := st.Delete(name); err != nil {
		return false, err
	}
	return true, nil
}

// checkDemoDir refuses a directory whose config.toml the demo would overwrite and
// that is not a config an earlier demo wrote there: `demo --dir ~/.config/gatepass`
// must not replace a real config and its client secret.
func checkDemoDir(dir string) error {
	path := filepath.Join(dir, "config.toml")
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) || isDemoConfig(path) {
		return nil
	}
	return usagef("%s already exists and is not a config of an earlier `gatepass demo`; the demo would replace it: "+
		"give --dir a new or empty directory (or leave --dir out for a temporary one)", path)
}

// isDemoConfig reports whether the file at path is a config the demo wrote: its one
// profile is a demo profile ("demo", "demo-2", …), of the embedded provider's client, at a loopback http issuer.
func isDemoConfig(path string) bool {
	cfg, err := broker.LoadConfig(path)
	if err != nil || len(cfg.Profiles) != 1 {
		return false
	}
	p := cfg.Profiles[0]
	u, err := url.Parse(p.Issuer)
	return err == nil && isDemoProfileName(p.Name) && p.ClientID == demo.DefaultClientID &&
		u.Scheme == "http" && u.Hostname() == "127.0.0.1"
}

// startDemo starts the embedded provider and gateway on loopback and writes
// a matching config into dir. listen is the proxy address for the config, profile
// its one profile's name (demoProfileFor).
func startDemo(ctx context.Context, dir, listen, profile string, opts demo.Options) (*demoEnv, error) {
	if err := checkDemoDir(dir); err != nil {
		return nil, err
	}
	p, err := demo.Start("127.0.0.1:0", opts)
	if err != nil {
		return nil, fmt.Errorf("start the demo identity provider: %w", err)
	}
	gwHandler, err := demo.NewGateway(ctx, p.Issuer(), p.ClientID())
	if err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("start the demo gateway: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("listen for the demo gateway: %w", err)
	}
	gw := &http.Server{Handler: gwHandler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = gw.Serve(ln) }()
	gwHost := "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	pat, err := broker.ParsePattern(gwHost)
	if err != nil {
		_ = gw.Close()
		_ = p.Close()
		return nil, err
	}
	cfg := &broker.Config{
		Listen:         listen,
		DefaultProfile: profile,
		Profiles: []*broker.Profile{{
			Name:         profile,
			Issuer:       p.Issuer(),
			ClientID:     p.ClientID(),
			ClientSecret: p.ClientSecret(),
			Scopes:       []string{"openid", "email"},
			Gateways:     []broker.Pattern{pat},
			PlainHTTP:    []broker.Pattern{pat},
			Inject:       broker.IDToken,
		}},
	}
	data, err := broker.EncodeConfig(cfg)
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	path := filepath.Join(dir, "config.toml")
	if err == nil {
		err = os.WriteFile(path, data, 0o600)
	}
	if err == nil {
		cfg, err = broker.LoadConfig(path) // exactly what the CLI will read
	}
	if err != nil {
		_ = gw.Close()
		_ = p.Close()
		return nil, fmt.Errorf("write the demo config: %w", err)
	}
	return &demoEnv{Provider: p, GatewayURL: "http://" + gwHost, ConfigPath: path, Config: cfg, gateway: gw}, nil
}

func cmdDemo(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for the demo config (default: a new temporary directory)")
	listen := fs.String("listen", broker.DefaultListen, "proxy address written into the demo config")
	rotate := fs.Bool("rotate", false, "rotate refresh tokens on every refresh, with reuse detection")
	ttl := fs.Duration("token-ttl", time.Hour, "lifetime of demo access and ID tokens")
	auto := fs.Bool("auto-approve", false, "skip the demo consent page")
	if err := e.parse("demo", fs, args, "demo [--dir DIR] [--listen ADDR] [--rotate] [--token-ttl 1h] [--auto-approve]"); err != nil {
		return err
	}
	// The demo writes a config of its own with a profile of its own: a --config or
	// --profile would be silently ignored.
	if e.configFlag != "" {
		return usagef("--config does not apply to demo: it writes a config of its own; use --dir DIR to choose where (DIR/config.toml)")
	}
	if e.profile != "" {
		return usagef("--profile does not apply to demo: its config has one profile, %q", demoProfile)
	}
	made := "" // the directory to remove at the end, when the demo made it
	if *dir == "" {
		d, err := os.MkdirTemp("", "gatepass-demo-")
		if err != nil {
			return err
		}
		*dir, made = d, d
	}
	kc := broker.SystemKeychain{}
	profile, release := demoProfileFor(kc)
	defer release()
	d, err := startDemo(ctx, *dir, *listen, profile, demo.Options{
		RotateRefreshTokens: *rotate,
		DetectReuse:         *rotate,
		AccessTTL:           *ttl,
		IDTokenTTL:          *ttl,
		AutoApprove:         *auto,
	})
	if err != nil {
		return err
	}
	defer d.forget(kc, made)
	defer d.Close()
	if err := probeKeychain(kc); err != nil {
		// Checked now, not after a whole browser round trip in `gatepass login`.
		fmt.Fprintf(e.stderr, "warning: `gatepass login` will not be able to keep the sign-in: %v\n\n", err)
	}
	// Instructions for a person: stderr (stdout carries data only, DESIGN §2).
	fmt.Fprintf(e.stderr, `gatepass demo is running (Ctrl-C stops it).

  identity provider  %s   (signs in %s; Google-faithful: PKCE, client secret, single-use codes)
  sample gateway     %s   (accepts only a valid ID token from that provider)
  config             %s

In another terminal:

  export GATEPASS_CONFIG=%s
  gatepass login                       # opens the browser; click Allow
  gatepass status
  curl -H "$(gatepass token --format header)" %s/hello
  gatepass proxy &                     # the local proxy on %s
  curl -x http://%s %s/hello           # the proxy adds the token
  gatepass logout
`, d.Provider.Issuer(), "dev@example.test", d.GatewayURL, d.ConfigPath, app.ShellQuote(d.ConfigPath), d.GatewayURL, *listen, *listen, d.GatewayURL)
	<-ctx.Done()
	fmt.Fprintln(e.stderr, "demo stopped")
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}
