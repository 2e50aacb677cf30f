package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// DefaultLoginTimeout is how long Login waits for the browser.
const DefaultLoginTimeout = 5 * time.Minute

// LoginOptions tune one sign-in.
type LoginOptions struct {
	// Browser opens the sign-in's start address (see Prompt); nil uses
	// Deps.Browser. Ignored with NoBrowser.
	Browser   Browser
	NoBrowser bool
	// Prompt receives the sign-in's start address and progress lines (stderr in
	// the CLI), so a user whose browser did not open can copy the address. It is
	// http://127.0.0.1:PORT/ on the callback listener, which redirects to the
	// issuer: the authorization URL itself, with its state, is never printed.
	Prompt io.Writer
	// Timeout bounds the wait for the browser; default DefaultLoginTimeout.
	Timeout time.Duration
	// CallbackPort pins the loopback port; 0 picks a free one (RFC 8252 §7.3).
	CallbackPort int
	// LoginHint preselects an account at the issuer (OIDC login_hint).
	LoginHint string
	// Address, when set, hears the sign-in's start address (as Prompt gets it) once
	// the browser was asked to open it: err is nil when the opener started, its error
	// when it could not, and the user must open the address by hand. A desktop app
	// shows it, since nobody reads its stderr: an opener can succeed and still show
	// nothing (a browser on another display, a command that only logs).
	Address func(url string, err error)
}

// LoginTimeoutError is a sign-in that ran out of time waiting for the browser:
// nothing came back to the loopback listener within After.
type LoginTimeoutError struct{ After time.Duration }

func (e *LoginTimeoutError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for the sign-in in the browser; run `gatepass login` again (use --timeout to wait longer)", e.After)
}

// ErrLoginInProgress means a sign-in for the profile is already waiting
// for the browser; a second click must not open a second tab.
var ErrLoginInProgress = errors.New("a sign-in is already waiting in the browser")

// PortInUseError means the loopback callback port could not be bound.
type PortInUseError struct {
	Port int
	Err  error
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("cannot listen on 127.0.0.1:%d for the sign-in redirect (%v); another program uses that port: "+
		"pick another with --callback-port, or leave it out to use a random free port", e.Port, e.Err)
}

func (e *PortInUseError) Unwrap() error { return e.Err }

// Login signs the profile in with the authorization code flow, PKCE S256
// (RFC 7636) and a loopback redirect (RFC 8252 §7.3), verifies the ID
// token and stores the refresh token in the keychain. The browser is
// opened at most once.
func (b *Broker) Login(ctx context.Context, profile string, opts LoginOptions) (ProfileStatus, error) {
	s, err := b.session(profile)
	if err != nil {
		return ProfileStatus{}, err
	}
	if err := s.p.CheckClientSecret(); err != nil {
		return s.status(), err // said before the browser, not after the consent
	}
	if !s.loginMu.TryLock() {
		return s.status(), fmt.Errorf("profile %s: %w; finish or cancel it first", s.p.Name, ErrLoginInProgress)
	}
	defer s.loginMu.Unlock()
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultLoginTimeout
	}
	if opts.Prompt == nil {
		opts.Prompt = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	prevState, prevReason := s.status().State, s.status().Reason
	s.setState(StateSigningIn, "")
	b.publish(s.status())
	var waiting bool // the URL was handed to the user; now it's the browser we wait for
	st, err := b.login(ctx, s, opts, &waiting)
	if err != nil {
		s.setState(prevState, prevReason)
		b.publish(s.status())
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			if waiting {
				err = &LoginTimeoutError{After: opts.Timeout}
			} else {
				err = fmt.Errorf("timed out after %s reaching the issuer %s (use --timeout to wait longer): %w", opts.Timeout, s.p.Issuer, err)
			}
		}
		return s.status(), fmt.Errorf("profile %s: %w", s.p.Name, err)
	}
	return st, nil
}

func (b *Broker) login(ctx context.Context, s *session, opts LoginOptions, waiting *bool) (ProfileStatus, error) {
	prov, err := b.provider(ctx, s)
	if err != nil {
		return ProfileStatus{}, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.CallbackPort)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EACCES) {
			return ProfileStatus{}, &PortInUseError{Port: opts.CallbackPort, Err: err}
		}
		return ProfileStatus{}, fmt.Errorf("open the loopback listener for the sign-in redirect: %w", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", port)
	// The browser is opened at, and the user shown, this start address on the same
	// listener, which redirects to the authorization URL: that URL's state, nonce and
	// PKCE challenge never reach an opener's command line (/proc/*/cmdline, readable
	// by every local user) or the terminal. It works wherever the callback does.
	startURL := fmt.Sprintf("http://127.0.0.1:%d%s", port, startPath)

	state, nonce := randomString(), randomString()
	verifier := oauth2.GenerateVerifier()
	cfg := prov.oauth
	cfg.RedirectURL = redirect
	params := append([]oauth2.AuthCodeOption{
		oauth2.S256ChallengeOption(verifier),
		oidc.Nonce(nonce),
	}, prov.authParams...)
	if opts.LoginHint != "" {
		params = append(params, oauth2.SetAuthURLParam("login_hint", opts.LoginHint))
	}
	authURL := cfg.AuthCodeURL(state, params...)

	var result *ProfileStatus
	finish := func(code string) (string, error) {
		octx := context.WithValue(ctx, oauth2.HTTPClient, b.deps.HTTPClient)
		tok, err := cfg.Exchange(octx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			return "", tokenEndpointError(s.p, err)
		}
		id, err := b.verify(ctx, prov, s, tok, nonce)
		if err != nil {
			return "", err
		}
		if id == nil {
			return "", fmt.Errorf("the issuer returned no ID token; make sure the scopes include \"openid\"")
		}
		if tok.RefreshToken == "" {
			return "", errors.New("the issuer returned no refresh token, so gatepass cannot keep you signed in; " +
				"allow refresh tokens (offline access) for this OAuth client at the issuer")
		}
		entry := &Entry{
			Version:      1,
			RefreshToken: tok.RefreshToken,
			Issuer:       s.p.Issuer,
			ClientID:     s.p.ClientID,
			Subject:      id.claims.Subject,
			Email:        id.claims.Email,
			Scopes:       cfg.Scopes,
			SavedAt:      b.deps.Clock.Now(),
		}
		s.refreshMu.Lock()
		defer s.refreshMu.Unlock()
		unlock, err := b.lockFile(ctx, s.p.Name)
		if err != nil {
			return "", err
		}
		defer unlock()
		if err := b.store.Save(s.p.Name, entry); err != nil {
			return "", fmt.Errorf("store the refresh token in the keychain: %w", err)
		}
		s.signOut() // clear anything of the previous account
		s.setEntry(entry)
		s.install(tok, id, b.deps.Clock.Now(), b.deps.Jitter())
		st := s.status()
		result = &st
		return displayName(id.claims), nil
	}
	handler := newCallbackHandler(state, finish)
	handler.authURL = authURL
	handler.peers = b.callbackPeers(s.p.Name)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       withConn, // for handler.peers: who holds the other end
	}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	}()

	*waiting = true
	fmt.Fprintf(opts.Prompt, "Sign in to %s for profile %q in your browser. If it does not open, visit:\n\n  %s\n\n", hostOf(s.p.Issuer), s.p.Name, startURL)
	if !opts.NoBrowser {
		br := opts.Browser
		if br == nil {
			br = b.deps.Browser
		}
		if br != nil {
			err := br.Open(startURL)
			if err != nil {
				fmt.Fprintf(opts.Prompt, "Could not open a browser (%v); open the URL above yourself.\n", err)
			}
			if opts.Address != nil {
				opts.Address(startURL, err)
			}
		}
	}
	select {
	case r := <-handler.result:
		if r.err != nil {
			return ProfileStatus{}, r.err
		}
		b.publish(*result)
		return *result, nil
	case <-ctx.Done():
		return ProfileStatus{}, ctx.Err()
	}
}

// verify checks the ID token in tok, if any (signature via JWKS, iss, aud
// = client ID, exp; nonce when one was sent) and that it names the same
// user the keychain entry was made for. It returns nil when the response
// carried no ID token.
func (b *Broker) verify(ctx context.Context, prov *provider, s *session, tok *oauth2.Token, nonce string) (*verifiedID, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, nil
	}
	ctx = oidc.ClientContext(ctx, b.deps.HTTPClient)
	idt, err := prov.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, &IssuerError{Issuer: s.p.Issuer, Op: "ID token verification", Err: err,
			Hint: "the token was not stored or used; check issuer and client_id of profile " + s.p.Name + ", and this machine's clock"}
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		return nil, fmt.Errorf("read ID token claims: %w", err)
	}
	if nonce != "" && c.Nonce != nonce {
		return nil, &IssuerError{Issuer: s.p.Issuer, Op: "ID token verification", Err: errors.New("nonce does not match the sign-in request"),
			Hint: "the token was not stored; sign in again"}
	}
	s.mu.Lock()
	entry := s.entry
	s.mu.Unlock()
	if nonce == "" && entry != nil && entry.Subject != "" && c.Subject != entry.Subject {
		return nil, &IssuerError{Issuer: s.p.Issuer, Op: "ID token verification", Err: errors.New("refreshed ID token names a different user than the stored sign-in"),
			Hint: "run `gatepass logout --profile " + s.p.Name + "` and sign in again"}
	}
	return &verifiedID{raw: raw, expiry: idt.Expiry, claims: c}, nil
}

func displayName(c idClaims) string {
	if c.Email != "" {
		return c.Email
	}
	return c.Subject
}

func hostOf(issuer string) string {
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		return u.Host
	}
	return issuer
}

// randomString returns 32 bytes of crypto randomness, base64url: for state
// and nonce (RFC 6749 §10.10: at least 128 bits).
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// LogoutResult says what Logout did.
type LogoutResult struct {
	WasSignedIn bool
	Revoked     bool // the refresh token is no longer valid at the issuer
	// AlreadyInvalid: the issuer answered that the token was already invalid
	// (Google's 400 invalid_token after a revocation, an expiry or an invalid_grant).
	AlreadyInvalid bool
}

// errAlreadyInvalid is the revocation endpoint saying the token it was given is
// no longer valid: for a sign-out, that is as good as revoking it.
var errAlreadyInvalid = errors.New("the issuer says the refresh token is already invalid")

// RevokeError means the local sign-in was removed but the issuer could
// not be told to revoke the refresh token (RFC 7009).
type RevokeError struct {
	Profile string
	Err     error
}

func (e *RevokeError) Error() string {
	return fmt.Sprintf("profile %s: signed out locally (the keychain entry is deleted), but revoking at the issuer failed: %v; "+
		"the refresh token stays valid until it expires — revoke it in your account's security settings (Google: https://myaccount.google.com/permissions)", e.Profile, e.Err)
}

func (e *RevokeError) Unwrap() error { return e.Err }

// Logout revokes the profile's refresh token at the issuer's
// revocation_endpoint (RFC 7009 §2.1) and deletes the keychain entry. A
// failed revocation is reported as *RevokeError; the entry is deleted
// regardless, so the user is never left half signed in.
func (b *Broker) Logout(ctx context.Context, profile string) (LogoutResult, error) {
	s, err := b.session(profile)
	if err != nil {
		return LogoutResult{}, err
	}
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	unlock, err := b.lockFile(ctx, s.p.Name)
	if err != nil {
		return LogoutResult{}, err
	}
	defer unlock()

	entry, err := b.store.Load(s.p.Name)
	if errors.Is(err, ErrNotFound) {
		s.signOut()
		b.publish(s.status())
		return LogoutResult{}, nil
	}
	var revokeErr error
	var corrupt *CorruptEntryError
	if errors.As(err, &corrupt) {
		// Nothing to revoke with: delete it, and say what cannot be done (not the
		// entry's own advice, which is to run this very logout).
		revokeErr = fmt.Errorf("the keychain entry was unreadable (%s), so its refresh token could not be sent to the issuer", corrupt.Reason)
	} else if err != nil {
		revokeErr = err
	} else {
		// After an unsaved rotation the live token is the one in memory.
		revokeErr = b.revoke(ctx, s, s.withUnsaved(entry).RefreshToken)
	}
	if err := b.store.Delete(s.p.Name); err != nil && !errors.Is(err, ErrNotFound) {
		return LogoutResult{WasSignedIn: true}, fmt.Errorf("delete the keychain entry of profile %s: %w", s.p.Name, err)
	}
	s.signOut()
	b.publish(s.status())
	res := LogoutResult{WasSignedIn: true, Revoked: revokeErr == nil}
	if errors.Is(revokeErr, errAlreadyInvalid) {
		res.Revoked, res.AlreadyInvalid, revokeErr = true, true, nil
	}
	if revokeErr != nil {
		return res, &RevokeError{Profile: s.p.Name, Err: revokeErr}
	}
	return res, nil
}

func (b *Broker) revoke(ctx context.Context, s *session, token string) error {
	prov, err := b.provider(ctx, s)
	if err != nil {
		return err
	}
	if prov.revocationURL == "" {
		return errors.New("the issuer's discovery document lists no revocation_endpoint")
	}
	form := url.Values{"token": {token}, "token_type_hint": {"refresh_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, prov.revocationURL, nil)
	if err != nil {
		return err
	}
	if prov.oauth.Endpoint.AuthStyle == oauth2.AuthStyleInHeader && s.p.ClientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(s.p.ClientID), url.QueryEscape(s.p.ClientSecret))
	} else {
		form.Set("client_id", s.p.ClientID)
		if s.p.ClientSecret != "" {
			form.Set("client_secret", s.p.ClientSecret)
		}
	}
	body := form.Encode()
	req.Body = io.NopCloser(strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.deps.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("revocation request: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	// RFC 7009 §2.2 wants 200 for a token that is already invalid; Google answers
	// 400 {"error": "invalid_token"} instead.
	var oe struct {
		Error string `json:"error"`
	}
	if resp.StatusCode == http.StatusBadRequest && json.Unmarshal(raw, &oe) == nil && oe.Error == "invalid_token" {
		return errAlreadyInvalid
	}
	return fmt.Errorf("revocation endpoint answered HTTP %d", resp.StatusCode)
}
