package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/proxy"
)

// agentInfo is what `status` says about a running agent.
type agentInfo struct {
	Address string `json:"address"`
	Running bool   `json:"running"`
	// Note says why it is not running: something else holds the address, or the
	// desktop app of this config has its proxy switched off.
	Note string `json:"note,omitempty"`
}

// proxyStatus is this config's proxy. Only this config's agent (found by its control
// socket) can be running it: a gatepass proxy that answers on the config's listen
// without one is another config's, and forwards this config's gateways without a token.
func (e *env) proxyStatus(ctx context.Context, cfg *broker.Config) agentInfo {
	path, err := broker.ControlSocketPath(cfg.Path)
	if err != nil {
		return probeAgent(ctx, cfg.Listen) // no control socket here: the listen is all there is
	}
	addr, alive := (broker.AgentClient{Path: path}).Proxy(ctx) // one ping
	if addr != "" {
		return probeAgent(ctx, addr)
	}
	info := agentInfo{Address: cfg.Listen}
	if alive {
		// The desktop app runs for this config with its proxy switched off: another
		// `gatepass proxy` would be refused (one agent a config).
		info.Note = "the gatepass app running for this config has its proxy switched off: switch Proxy on in its window"
		return info
	}
	if probeAgent(ctx, cfg.Listen).Running {
		info.Note = "another gatepass (for a different config) is listening on " + cfg.Listen +
			"; it does not know this config's gateways: stop it, or set another `listen` in this config"
	}
	return info
}

// probeAgent asks the listen address whether a gatepass proxy answers
// there. It sends an origin-form request, which the proxy answers with
// its status page and never with a token.
func probeAgent(ctx context.Context, listen string) agentInfo {
	info := agentInfo{Address: listen}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listen+"/", nil)
	if err != nil {
		return info
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Do(req)
	if err != nil {
		return info
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	info.Running = strings.Contains(strings.ToLower(string(body)), "gatepass")
	return info
}

// cmdDoctor checks what a sign-in and the proxy depend on, each with a
// verdict and a fix, and fails when any check fails.
func cmdDoctor(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	if err := e.parse("doctor", fs, args, "doctor"); err != nil {
		return err
	}
	failed := 0
	check := func(name string, err error, okMsg string) {
		if err != nil {
			failed++
			fmt.Fprintf(e.stdout, "FAIL  %-10s %v\n", name, err)
			return
		}
		fmt.Fprintf(e.stdout, "ok    %-10s %s\n", name, okMsg)
	}
	cfg, err := e.loadConfig()
	if err != nil {
		check("config", err, "")
		// The config's error, so that the exit code is a config error's (2).
		return fmt.Errorf("%d check(s) failed: %w", failed, err)
	}
	profiles := cfg.Profiles
	if e.profile != "" {
		// --profile narrows the issuer check to one profile, and a wrong name is the
		// usage error it is for every other command.
		p, err := cfg.Profile(e.profile)
		if err != nil {
			return usagef("%v", err)
		}
		profiles = []*broker.Profile{p}
	}
	check("config", nil, cfg.Path)

	kc := broker.SystemKeychain{}
	check("keychain", probeKeychain(kc), "Secret Service reachable")

	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr == nil {
		_ = ln.Close()
	}
	check("loopback", lerr, "can listen on 127.0.0.1 for the sign-in redirect")

	px := e.proxyStatus(ctx, cfg)
	if px.Running {
		check("proxy", nil, "this config's gatepass proxy answers on "+px.Address)
	} else if px.Note != "" {
		check("proxy", errors.New(px.Note), "")
	} else if err := proxy.CheckListen(cfg.Listen); err != nil {
		check("proxy", err, "") // names the program holding the port when it can
	} else {
		check("proxy", nil, cfg.Listen+" is free")
	}

	msg, perr := proxy.CheckPeers()
	check("users", perr, msg)

	if names := caNames(cfg); len(names) > 0 {
		msg, err := e.checkLocalCA(ctx, cfg, names, kc, px.Running)
		check("ca", err, msg)
	}

	client := broker.NewHTTPClient(cfg, 10*time.Second)
	for _, p := range profiles {
		start := time.Now()
		err := checkIssuer(ctx, client, p)
		check("issuer", err, fmt.Sprintf("%s (profile %s) answers discovery in %s", p.Issuer, p.Name, time.Since(start).Round(time.Millisecond)))
		if err := p.CheckClientSecret(); err != nil {
			check("secret", err, "") // discovery answers, and the sign-in would still fail
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	return nil
}

// checkIssuer is doctor's issuer check for one profile: discovery answers, with a
// clock close to the issuer's, and names this issuer. A request that gets no answer
// says what to fix, as a sign-in would (broker.IssuerHint): trust for a certificate
// this machine does not accept, the network or upstream_proxy for the rest.
func checkIssuer(ctx context.Context, client *http.Client, p *broker.Profile) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(p.Issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		if hint := broker.IssuerHint(err); hint != "" {
			return fmt.Errorf("%w; %s", err, hint)
		}
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("discovery answered HTTP %d; check `issuer`", resp.StatusCode)
	}
	if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
		skew := time.Since(d).Round(time.Second)
		if skew > 2*time.Minute || skew < -2*time.Minute {
			return fmt.Errorf("this machine's clock is %s off the issuer's; ID tokens will fail verification — sync the clock", skew)
		}
	}
	// What a sign-in does with the document: parse it, and check that it names
	// this issuer.
	return broker.CheckDiscovery(ctx, p, client)
}

// probeKeychain reads an entry that does not exist: nil when the keychain answers
// (with "not found"), else why it cannot be used.
func probeKeychain(kc broker.Keychain) error {
	if _, err := kc.Get(broker.KeychainService, "gatepass-doctor-probe"); err != nil && !errors.Is(err, broker.ErrNotFound) {
		return err
	}
	return nil
}

// checkLocalCA is doctor's CA check. When an agent runs for cfg it checks the CA
// that agent's proxy intercepts with, asked over the control socket: reading the
// keychain here would be a second read (a prompt on macOS) of an entry the agent
// already holds (LESSONS: one keychain read at agent start; CLI asks the agent).
// Only without an agent is the keychain entry checked. proxyRunning says whether
// this config's proxy answers (doctor's proxy check).
func (e *env) checkLocalCA(ctx context.Context, cfg *broker.Config, names []string, kc broker.Keychain, proxyRunning bool) (string, error) {
	if c, ok := e.agent(ctx, cfg); ok {
		got, err := c.CA(ctx)
		switch {
		case err == nil:
			return checkAgentCA(got, caCertPath(cfg), names, shellCommand(cfg))
		case errors.Is(err, broker.ErrNoAgent):
			// The agent stopped between the ping and the question: the keychain
			// is the CA's only home again.
		case errors.Is(err, errors.ErrUnsupported):
			return "", errors.New("the running gatepass agent for this config is from an older gatepass and cannot say which local CA it uses: " +
				"restart it (quit the desktop app, or stop `gatepass proxy`, and start it again), then run doctor again")
		case !proxyRunning:
			// The desktop app with its proxy switched off has read no CA yet, and
			// nothing intercepts: nothing is wrong, and the keychain is not read.
			return "not checked: the running gatepass agent's proxy is off, so it has not loaded the local CA yet " +
				"(it does when the proxy is switched on; run doctor again then)", nil
		default:
			return "", fmt.Errorf("the running gatepass agent did not say which local CA it uses: %w", err)
		}
	}
	return checkCA(newKeychainCA(kc, cfg), names)
}

// checkAgentCA checks the CA certificate a running agent answered with: one CA
// certificate (never a key), not about to expire, whose name constraints permit
// every gateway of the config (names, from caNames), and that the file at its path
// (defaultPath when the agent names none) holds exactly it, as curl --cacert reads
// it. command is how the user's shell runs gatepass for this config (shellCommand).
// It changes nothing: the fixes say what does.
func checkAgentCA(got broker.AgentCA, defaultPath string, names []string, command string) (string, error) {
	const restart = "restart the agent (quit the desktop app, or stop `gatepass proxy`, and start it again)"
	cert, err := parseCACert(got.CertPEM)
	if err != nil {
		return "", fmt.Errorf("the running gatepass agent answered with an unusable local CA certificate (%v): %s, then run doctor again", err, restart)
	}
	have := certNames(cert)
	if time.Until(cert.NotAfter) < 30*24*time.Hour {
		return "", fmt.Errorf("the running gatepass agent's local CA expires %s: %s, which renews it, then trust it again (`%s ca export`)",
			cert.NotAfter.Format(time.DateOnly), restart, command)
	}
	if missing := uncovered(have, names); len(missing) > 0 {
		return "", fmt.Errorf("the running gatepass agent's local CA may not sign for %s (it may for %s): the config's gateways changed since the agent started; "+
			"%s so that it makes a CA for them, then trust it again (`%s ca export`)",
			strings.Join(missing, ", "), strings.Join(have, ", "), restart, command)
	}
	path := got.Path
	if path == "" {
		path = defaultPath
	}
	onDisk, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%s, the running gatepass agent's CA certificate file, is missing: `%s ca path` writes it again", path, command)
	case err != nil:
		return "", fmt.Errorf("read the running gatepass agent's CA certificate file: %w", err)
	case !bytes.Equal(onDisk, got.CertPEM):
		return "", fmt.Errorf("%s does not hold the running gatepass agent's local CA (something replaced it), so `curl --cacert %s` does not trust the proxy: "+
			"`%s ca path` writes the agent's certificate there again", path, app.ShellQuote(path), command)
	}
	return fmt.Sprintf("local CA of the running gatepass agent valid until %s, may sign only for %s (gateways: %s); %s holds it",
		cert.NotAfter.Format(time.DateOnly), strings.Join(have, ", "), strings.Join(names, ", "), path), nil
}

// uncovered returns the names (the config's gateways, from caNames) that a CA
// permitting have may not sign for.
func uncovered(have, names []string) []string {
	permitted := map[string]bool{}
	for _, n := range have {
		permitted[caNameKey(n)] = true
	}
	var missing []string
	for _, n := range names {
		if !permitted[caNameKey(n)] {
			missing = append(missing, n)
		}
	}
	return missing
}

// caNameKey is a name constraint or gateway name in one spelling, to compare them:
// lowercase, an IP address in its canonical form.
func caNameKey(n string) string {
	n = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(n, "["), "]"))
	if a, err := netip.ParseAddr(n); err == nil {
		return a.Unmap().String()
	}
	return strings.TrimSuffix(n, ".")
}

// checkCA reports on the proxy's local CA in the keychain without changing it.
func checkCA(store keychainCA, names []string) (string, error) {
	certPEM, _, found, err := store.LoadCA()
	if err != nil {
		return "", fmt.Errorf("read the local CA from the keychain: %w", err)
	}
	if !found {
		return "no local CA yet; `gatepass proxy` or `gatepass ca export` creates one", nil
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return "", errors.New("the stored local CA is corrupt; `gatepass proxy` will regenerate it (then trust it again with `gatepass ca export`)")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("the stored local CA is corrupt (%v); `gatepass proxy` will regenerate it", err)
	}
	if time.Until(cert.NotAfter) < 30*24*time.Hour {
		return "", fmt.Errorf("the local CA expires %s; `gatepass proxy` will renew it (then trust it again)", cert.NotAfter.Format(time.DateOnly))
	}
	return fmt.Sprintf("local CA valid until %s, may sign only for %s (gateways: %s)",
		cert.NotAfter.Format(time.DateOnly), strings.Join(certNames(cert), ", "), strings.Join(names, ", ")), nil
}
