package demo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
)

// NewGateway returns the sample gateway: an API that accepts only a valid ID
// token of issuer for clientID in "Authorization: Bearer ..." (RFC 6750
// §2.1), checked as a gateway in front of Google would check it: the JWKS
// signature, iss, aud == clientID and exp (OpenID Connect Core §3.1.3.7).
//
// A good token gets 200 JSON {"message":"hello, <email>","email","sub",
// "method","path"}. Anything else gets 401 JSON {"error","hint"} and
// WWW-Authenticate: Bearer error="invalid_token" (RFC 6750 §3). The token is
// never echoed. Discovery happens now, with ctx; keys are fetched on use.
func NewGateway(ctx context.Context, issuer, clientID string) (http.Handler, error) {
	if clientID == "" {
		return nil, errors.New("create the demo gateway: a client ID (the expected audience) is required")
	}
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("create the demo gateway: discover issuer %s (is the demo identity provider running?): %w", issuer, err)
	}
	g := &gateway{verifier: provider.Verifier(&oidc.Config{ClientID: clientID}), clientID: clientID}
	return g, nil
}

type gateway struct {
	verifier *oidc.IDTokenVerifier
	clientID string
}

// gatewayClaims are the ID token claims the gateway reports.
type gatewayClaims struct {
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		g.refuse(w, "missing_token", "send an ID token in \"Authorization: Bearer <token>\": route the request through `gatepass proxy`, or use `gatepass token --type id`")
		return
	}
	tok, err := g.verifier.Verify(r.Context(), raw)
	if err != nil {
		code, hint := classify(err, g.clientID)
		// go-oidc's messages do not carry the token; make sure of it.
		hint = strings.ReplaceAll(hint, raw, "[token]")
		g.refuse(w, code, hint)
		return
	}
	var c gatewayClaims
	if err := tok.Claims(&c); err != nil {
		g.refuse(w, "invalid_token", "the ID token's claims could not be read; sign in again with `gatepass login`")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"message": "hello, " + c.Email,
		"email":   c.Email,
		"sub":     tok.Subject,
		"method":  r.Method,
		"path":    r.URL.Path,
	})
}

// classify turns a verification failure into an error code and a hint that
// says what to do next.
func classify(err error, clientID string) (code, hint string) {
	var expired *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &expired):
		return "token_expired", "the ID token expired at " + expired.Expiry.UTC().Format("2006-01-02T15:04:05Z") + "; get a fresh one with `gatepass token --type id` (the proxy refreshes it for you)"
	case strings.Contains(msg, "expected audience"):
		return "wrong_audience", fmt.Sprintf("the ID token was issued for another client; this gateway accepts aud %q: check client_id in the gatepass profile (%s)", clientID, msg)
	case strings.Contains(msg, "issued by a different provider"):
		return "wrong_issuer", "the ID token comes from another issuer: check issuer in the gatepass profile (" + msg + ")"
	case strings.Contains(msg, "verify signature"), strings.Contains(msg, "verify id token signature"):
		return "invalid_token", "the ID token's signature does not match the issuer's keys; sign in again with `gatepass login`"
	default:
		return "invalid_token", "the bearer token is not a valid ID token (" + msg + "); send an ID token, not an access token"
	}
}

func (g *gateway) refuse(w http.ResponseWriter, code, hint string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": code, "hint": hint})
}
