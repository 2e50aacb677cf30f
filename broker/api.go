// Package broker signs users in with OAuth 2.0 + PKCE over a loopback redirect
// (RFC 8252, RFC 7636), keeps refresh tokens in the OS keychain, refreshes
// access and ID tokens ahead of expiry and revokes them on logout (RFC 7009).
//
// It knows nothing of Fyne or goproxy: the desktop app and the proxy consume
// it through the Broker type and small interfaces.
package broker

import (
	"errors"
	"fmt"
	"time"
)

// TokenKind names one of the two tokens a gateway may accept.
type TokenKind string

const (
	// AccessToken is the OAuth access token (opaque for Google).
	AccessToken TokenKind = "access_token"
	// IDToken is the OpenID Connect ID token, a JWT whose aud is the client ID.
	IDToken TokenKind = "id_token"
)

// ParseTokenKind accepts the config spelling (id_token, access_token) and the
// CLI spelling (id, access).
func ParseTokenKind(s string) (TokenKind, error) {
	switch s {
	case "id_token", "id":
		return IDToken, nil
	case "access_token", "access":
		return AccessToken, nil
	}
	return "", fmt.Errorf("unknown token type %q: use id or access (in the config: id_token or access_token)", s)
}

// Token is one usable credential held in memory only.
type Token struct {
	Kind   TokenKind
	Value  string
	Expiry time.Time
	// Header is the header the gateway takes the token in (Authorization or
	// Proxy-Authorization), set by TokenForHost only.
	Header string
}

// Redacted returns at most the last four characters of a token, the only
// part of a token gatepass ever writes to a log or message.
func Redacted(s string) string {
	if len(s) <= 8 {
		return "…"
	}
	return "…" + s[len(s)-4:]
}

// State is where a profile is in its life cycle.
type State string

const (
	StateSignedOut      State = "signed-out"
	StateSignedIn       State = "signed-in"
	StateRefreshing     State = "refreshing"
	StateSignInRequired State = "sign-in-required"
	StateSigningIn      State = "signing-in"
	// StateUnknown: the keychain could not be read (no Secret Service, locked,
	// access denied), so whether the profile is signed in is not known; Reason
	// says why. Reading it again, on the next status or request, may end it.
	StateUnknown State = "unknown"
)

// ProfileStatus is a snapshot of one profile, safe to hand to a UI: it holds
// no token.
type ProfileStatus struct {
	Profile  string    `json:"profile"`
	Issuer   string    `json:"issuer"`
	ClientID string    `json:"client_id"`
	Email    string    `json:"email,omitempty"`
	Subject  string    `json:"subject,omitempty"`
	State    State     `json:"state"`
	Reason   string    `json:"reason,omitempty"` // why sign-in is required, or the last refresh error
	Expiry   time.Time `json:"expiry,omitzero"`  // expiry of the profile's inject token (ID or access)
	Inject   TokenKind `json:"inject"`
	Gateways []string  `json:"gateways"`
	// PlainHTTP lists the gateways that get the token over plain HTTP
	// (loopback only), so a UI can show http:// examples for them.
	PlainHTTP []string `json:"plain_http,omitempty"`
	// Overrides maps the gateways with a token kind or header of their own to it
	// (config [profiles.NAME.overrides."GATEWAY"]); the others get Inject in
	// Authorization.
	Overrides map[string]Override `json:"overrides,omitempty"`
}

// Event tells subscribers that a profile's status changed.
type Event struct {
	Status ProfileStatus
}

// ErrSignInRequired means the profile has no usable refresh token: never
// signed in, signed out, or the issuer answered invalid_grant. The fix is
// `gatepass login --profile NAME`; nothing in gatepass opens a browser on
// its own because of it.
var ErrSignInRequired = errors.New("sign-in required")

// SignInRequiredError carries the profile and the reason; it matches
// ErrSignInRequired with errors.Is.
type SignInRequiredError struct {
	Profile string
	Reason  string
	// Command is how the user's shell runs gatepass for this config ("gatepass
	// --config FILE" for another than the default one), for the fix the message
	// names; "" is "gatepass". The CLI sets it before printing.
	Command string
}

func (e *SignInRequiredError) Error() string {
	msg := fmt.Sprintf("profile %q: sign-in required", e.Profile)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	command := e.Command
	if command == "" {
		command = "gatepass"
	}
	return msg + "; run `" + command + " login --profile " + e.Profile + "`"
}

// Is makes errors.Is(err, ErrSignInRequired) true.
func (e *SignInRequiredError) Is(target error) bool { return target == ErrSignInRequired }

// SignInRequired lets packages that do not import broker (the proxy) detect
// the condition through an interface.
func (e *SignInRequiredError) SignInRequired() (profile string) { return e.Profile }

// Keychain is the OS secret store, shaped like github.com/zalando/go-keyring.
// Get returns ErrNotFound when there is no entry.
type Keychain interface {
	Get(service, account string) (string, error)
	Set(service, account, secret string) error
	Delete(service, account string) error
}

// ErrNotFound is returned by Keychain.Get and Delete when no entry exists.
var ErrNotFound = errors.New("no keychain entry")

// Browser opens a sign-in's start address for the user: a loopback URL that
// redirects to the issuer's authorization URL (LoginOptions.Prompt).
type Browser interface {
	Open(url string) error
}

// Clock is the wall clock; tests use a fake one.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real wall clock.
type SystemClock struct{}

// Now returns time.Now() without its monotonic reading. Go compares two times that
// both carry one by the monotonic clock, which on Linux stops while the machine
// sleeps: after a night with the lid closed a token would look an hour younger
// than it is, and the refresh it is due would not happen. Tokens expire by the
// wall clock, so the broker computes with the wall clock only.
func (SystemClock) Now() time.Time { return time.Now().Round(0) }
