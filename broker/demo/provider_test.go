package demo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

func TestDiscovery(t *testing.T) {
	p := startProvider(t, Options{})
	if !strings.HasPrefix(p.Issuer(), "http://127.0.0.1:") {
		t.Fatalf("Issuer() = %q, want http://127.0.0.1:PORT", p.Issuer())
	}
	resp, doc := getJSON(t, p.Issuer()+"/.well-known/openid-configuration", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	iss := p.Issuer()
	for key, want := range map[string]string{
		"issuer":                 iss,
		"authorization_endpoint": iss + "/authorize",
		"token_endpoint":         iss + "/token",
		"jwks_uri":               iss + "/jwks",
		"revocation_endpoint":    iss + "/revoke",
		"userinfo_endpoint":      iss + "/userinfo",
	} {
		if doc[key] != want {
			t.Errorf("%s = %v, want %s", key, doc[key], want)
		}
	}
	lists := map[string][]string{
		"response_types_supported":              {"code"},
		"subject_types_supported":               {"public"},
		"id_token_signing_alg_values_supported": {"RS256"},
		"scopes_supported":                      {"openid", "email", "profile", "offline_access"},
		"code_challenge_methods_supported":      {"S256"},
		"token_endpoint_auth_methods_supported": {"client_secret_post", "client_secret_basic"},
		"grant_types_supported":                 {"authorization_code", "refresh_token"},
	}
	for key, want := range lists {
		raw, _ := doc[key].([]any)
		var got []string
		for _, v := range raw {
			got = append(got, v.(string))
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s = %v, missing %q", key, got, w)
			}
		}
	}
	// go-oidc accepts the document (the issuer matches exactly).
	if _, err := oidc.NewProvider(context.Background(), iss); err != nil {
		t.Fatalf("oidc.NewProvider: %v", err)
	}
	// JWKS: one RS256 key whose kid is the one in ID tokens.
	resp, jwks := getJSON(t, iss+"/jwks", nil)
	keys, _ := jwks["keys"].([]any)
	if resp.StatusCode != http.StatusOK || len(keys) != 1 {
		t.Fatalf("jwks = %d %v", resp.StatusCode, jwks)
	}
	k := keys[0].(map[string]any)
	if k["kty"] != "RSA" || k["alg"] != "RS256" || k["kid"] != p.kid || k["d"] != nil {
		t.Errorf("jwk = %v", k)
	}
}

func TestCodeFlow(t *testing.T) {
	tests := map[string]struct {
		style oauth2.AuthStyle
	}{
		"client_secret_post":  {oauth2.AuthStyleInParams},
		"client_secret_basic": {oauth2.AuthStyleInHeader},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			p := startProvider(t, Options{})
			cb := newCallback(t)
			cfg := oauthConfig(p, cb.URL())
			cfg.Endpoint.AuthStyle = tc.style
			tok := login(t, p, cfg, cb, oidc.Nonce("n-42"))

			q := cb.query()
			if q.Get("state") != "st-123" || q.Get("scope") != "openid email profile" {
				t.Errorf("callback query = %v", q)
			}
			if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" {
				t.Fatalf("token = %+v", tok)
			}
			if ttl := time.Until(tok.Expiry); ttl < 59*time.Minute || ttl > time.Hour {
				t.Errorf("access token expires in %v, want ~1h", ttl)
			}
			raw, _ := tok.Extra("id_token").(string)
			op, err := oidc.NewProvider(ctx, p.Issuer())
			if err != nil {
				t.Fatal(err)
			}
			idt, err := op.Verifier(&oidc.Config{ClientID: p.ClientID()}).Verify(ctx, raw)
			if err != nil {
				t.Fatalf("Verify(id_token): %v", err)
			}
			var c struct {
				Azp, Email, Name string
				Verified         bool `json:"email_verified"`
			}
			if err := idt.Claims(&c); err != nil {
				t.Fatal(err)
			}
			if idt.Subject != "1000001" || idt.Nonce != "n-42" || c.Azp != p.ClientID() ||
				c.Email != "dev@example.test" || !c.Verified || c.Name != "Demo Developer" {
				t.Errorf("claims = sub %q nonce %q %+v", idt.Subject, idt.Nonce, c)
			}
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Errorf("at_hash: %v", err)
			}
			// The access token works at /userinfo.
			resp, info := getJSON(t, p.Issuer()+"/userinfo", bearerHeader(tok.AccessToken))
			if resp.StatusCode != http.StatusOK || info["email"] != "dev@example.test" || info["sub"] != "1000001" {
				t.Errorf("userinfo = %d %v", resp.StatusCode, info)
			}
			s := p.Stats()
			if s.Authorizations != 1 || s.CodeExchanges != 1 || s.InvalidGrants != 0 {
				t.Errorf("stats = %+v", s)
			}
			for k, want := range map[string]string{"code_challenge_method": "S256", "access_type": "offline", "nonce": "n-42", "state": "st-123"} {
				if got := s.LastAuthParams.Get(k); got != want {
					t.Errorf("LastAuthParams[%s] = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestRefreshTokenOnlyForOfflineAccess(t *testing.T) {
	tests := map[string]struct {
		scope, accessType string
		wantRefresh       bool
	}{
		"online":                 {"openid email", "", false},
		"access_type=offline":    {"openid email", "offline", true},
		"offline_access scope":   {"openid email offline_access", "", true},
		"no openid, no id token": {"email", "offline", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := startProvider(t, Options{AutoApprove: true})
			body := signInForTokens(t, p, url.Values{"scope": {tc.scope}, "access_type": {tc.accessType}})
			if _, got := body["refresh_token"]; got != tc.wantRefresh {
				t.Errorf("refresh_token present = %v, want %v", got, tc.wantRefresh)
			}
			_, hasID := body["id_token"]
			if want := strings.Contains(tc.scope, "openid"); hasID != want {
				t.Errorf("id_token present = %v, want %v", hasID, want)
			}
		})
	}
}

func TestTokenClientAuthentication(t *testing.T) {
	const secret = "s3:cr/t+ü"
	p := startProvider(t, Options{AutoApprove: true, ClientSecret: secret})
	basic := func(id, sec string) http.Header {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
		return r.Header
	}
	tests := map[string]struct {
		form       url.Values
		header     http.Header
		status     int
		code, desc string
		challenge  bool
	}{
		"missing secret": {
			form: url.Values{"client_id": {p.ClientID()}}, status: 400, code: "invalid_request", desc: "client_secret is missing.",
		},
		"wrong secret": {
			form: url.Values{"client_id": {p.ClientID()}, "client_secret": {"nope"}}, status: 401, code: "invalid_client",
		},
		"unknown client": {
			form: url.Values{"client_id": {"other"}, "client_secret": {secret}}, status: 401, code: "invalid_client",
		},
		"no client id": {
			form: url.Values{}, status: 400, code: "invalid_request",
		},
		"wrong secret basic": {
			header: basic(p.ClientID(), "nope"), status: 401, code: "invalid_client", challenge: true,
		},
		"basic and post": {
			form: url.Values{"client_secret": {secret}}, header: basic(p.ClientID(), secret), status: 400, code: "invalid_request",
		},
		// Good credentials reach the grant: the code is unknown.
		"good post": {
			form: url.Values{"client_id": {p.ClientID()}, "client_secret": {secret}}, status: 400, code: "invalid_grant",
		},
		"good basic, form-urlencoded": {
			header: basic(p.ClientID(), secret), status: 400, code: "invalid_grant",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			form := url.Values{"grant_type": {"authorization_code"}, "code": {"4/0unknown"}, "redirect_uri": {"http://127.0.0.1:1/cb"}, "code_verifier": {strings.Repeat("a", 43)}}
			for k, v := range tc.form {
				form[k] = v
			}
			resp, body := postForm(t, p.Issuer()+"/token", form, tc.header)
			wantOAuthError(t, resp, body, tc.status, tc.code)
			if tc.desc != "" && body["error_description"] != tc.desc {
				t.Errorf("error_description = %v, want %q", body["error_description"], tc.desc)
			}
			if got := resp.Header.Get("WWW-Authenticate") != ""; got != tc.challenge {
				t.Errorf("WWW-Authenticate present = %v, want %v", got, tc.challenge)
			}
		})
	}
	if s := p.Stats(); s.CodeExchanges != 2 {
		t.Errorf("CodeExchanges = %d, want 2 (only authenticated requests count)", s.CodeExchanges)
	}
}

func TestTokenRequestErrors(t *testing.T) {
	p := startProvider(t, Options{})
	auth := url.Values{"client_id": {p.ClientID()}, "client_secret": {p.ClientSecret()}}
	with := func(kv ...string) url.Values {
		f := url.Values{}
		for k, v := range auth {
			f[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	tests := map[string]struct {
		form   url.Values
		status int
		code   string
	}{
		"unsupported grant": {with("grant_type", "password"), 400, "unsupported_grant_type"},
		"missing grant":     {with(), 400, "invalid_request"},
		"missing code":      {with("grant_type", "authorization_code"), 400, "invalid_request"},
		"missing refresh":   {with("grant_type", "refresh_token"), 400, "invalid_request"},
		"unknown refresh":   {with("grant_type", "refresh_token", "refresh_token", "1//nope"), 400, "invalid_grant"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, body := postForm(t, p.Issuer()+"/token", tc.form, nil)
			wantOAuthError(t, resp, body, tc.status, tc.code)
		})
	}
	t.Run("unknown refresh is Google's message", func(t *testing.T) {
		_, body := postForm(t, p.Issuer()+"/token", with("grant_type", "refresh_token", "refresh_token", "1//nope"), nil)
		if body["error_description"] != "Token has been expired or revoked." {
			t.Errorf("error_description = %v", body["error_description"])
		}
	})
	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(p.Issuer() + "/token")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET /token = %d, want 405", resp.StatusCode)
		}
	})
}

func TestCodeExchangeErrors(t *testing.T) {
	clock := newFakeClock()
	p := startProvider(t, Options{AutoApprove: true, Now: clock.Now, CodeTTL: time.Minute})
	cb := newCallback(t)
	tests := map[string]struct {
		mutate func(f url.Values)
		before func()
		desc   string
	}{
		"wrong verifier": {
			mutate: func(f url.Values) { f.Set("code_verifier", oauth2.GenerateVerifier()) },
			desc:   "Invalid code verifier.",
		},
		"missing verifier": {mutate: func(f url.Values) { f.Del("code_verifier") }},
		"short verifier":   {mutate: func(f url.Values) { f.Set("code_verifier", "abc") }},
		"wrong redirect_uri": {
			mutate: func(f url.Values) { f.Set("redirect_uri", cb.srv.URL+"/other") },
		},
		"missing redirect_uri": {mutate: func(f url.Values) { f.Del("redirect_uri") }},
		"expired code": {
			before: func() { clock.Advance(time.Minute + time.Second) },
		},
		"unknown code": {mutate: func(f url.Values) { f.Set("code", "4/0demo-unknown") }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v := oauth2.GenerateVerifier()
			code := codeFrom(t, authorize(t, p, authParams(p, cb.URL(), v)))
			form := url.Values{
				"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {cb.URL()},
				"code_verifier": {v}, "client_id": {p.ClientID()}, "client_secret": {p.ClientSecret()},
			}
			if tc.mutate != nil {
				tc.mutate(form)
			}
			if tc.before != nil {
				tc.before()
			}
			before := p.Stats().InvalidGrants
			resp, body := postForm(t, p.Issuer()+"/token", form, nil)
			wantOAuthError(t, resp, body, 400, "invalid_grant")
			if tc.desc != "" && body["error_description"] != tc.desc {
				t.Errorf("error_description = %v, want %q", body["error_description"], tc.desc)
			}
			if got := p.Stats().InvalidGrants; got != before+1 {
				t.Errorf("InvalidGrants = %d, want %d", got, before+1)
			}
		})
	}
	t.Run("a failed attempt consumes the code", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := codeFrom(t, authorize(t, p, authParams(p, cb.URL(), v)))
		form := url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {cb.URL()},
			"code_verifier": {oauth2.GenerateVerifier()}, "client_id": {p.ClientID()}, "client_secret": {p.ClientSecret()},
		}
		postForm(t, p.Issuer()+"/token", form, nil)
		form.Set("code_verifier", v)
		resp, body := postForm(t, p.Issuer()+"/token", form, nil)
		wantOAuthError(t, resp, body, 400, "invalid_grant")
	})
}

func TestReusedCodeRevokesItsTokens(t *testing.T) {
	ctx := context.Background()
	p := startProvider(t, Options{AutoApprove: true})
	cb := newCallback(t)
	cfg := oauthConfig(p, cb.URL())
	v := oauth2.GenerateVerifier()
	code := codeFrom(t, authorize(t, p, authParams(p, cb.URL(), v)))
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatalf("first exchange: %v", err)
	}
	_, err = cfg.Exchange(ctx, code, oauth2.VerifierOption(v))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("second exchange err = %v, want invalid_grant", err)
	}
	resp, body := postForm(t, p.Issuer()+"/token", refreshForm(p, tok.RefreshToken), nil)
	wantOAuthError(t, resp, body, 400, "invalid_grant")
	resp, _ = getJSON(t, p.Issuer()+"/userinfo", bearerHeader(tok.AccessToken))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("userinfo with the revoked access token = %d, want 401", resp.StatusCode)
	}
}

func TestRefresh(t *testing.T) {
	ctx := context.Background()
	type step struct {
		token   string // "first", "second" or "third": which refresh token to present
		wantErr bool
	}
	tests := map[string]struct {
		opts  Options
		steps []step
		// wantNew: each successful refresh returns a new refresh token.
		wantNew bool
	}{
		"no rotation (Google)": {
			steps: []step{{"first", false}, {"first", false}, {"first", false}},
		},
		"rotation": {
			opts:    Options{RotateRefreshTokens: true},
			steps:   []step{{"first", false}, {"first", true}, {"second", false}, {"third", false}},
			wantNew: true,
		},
		"rotation with reuse detection": {
			opts:    Options{RotateRefreshTokens: true, DetectReuse: true},
			steps:   []step{{"first", false}, {"first", true}, {"second", true}},
			wantNew: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.opts.AutoApprove = true
			p := startProvider(t, tc.opts)
			cb := newCallback(t)
			tok := login(t, p, oauthConfig(p, cb.URL()), cb)
			rts := map[string]string{"first": tok.RefreshToken}
			next := map[string]string{"first": "second", "second": "third", "third": "fourth"}
			for i, s := range tc.steps {
				resp, body := postForm(t, p.Issuer()+"/token", refreshForm(p, rts[s.token]), nil)
				if s.wantErr {
					wantOAuthError(t, resp, body, 400, "invalid_grant")
					continue
				}
				if resp.StatusCode != 200 || body["access_token"] == "" || body["id_token"] == nil {
					t.Fatalf("step %d: refresh = %d %v", i, resp.StatusCode, body)
				}
				newRT, has := body["refresh_token"].(string)
				if has != tc.wantNew {
					t.Fatalf("step %d: refresh_token present = %v, want %v", i, has, tc.wantNew)
				}
				if has {
					if newRT == rts[s.token] {
						t.Fatalf("step %d: rotated refresh token is the old one", i)
					}
					rts[next[s.token]] = newRT
				}
			}
			if got, want := p.Stats().Refreshes, len(tc.steps); got != want {
				t.Errorf("Refreshes = %d, want %d", got, want)
			}
		})
	}
	t.Run("x/oauth2 keeps the refresh token when none is returned", func(t *testing.T) {
		p := startProvider(t, Options{AutoApprove: true})
		cb := newCallback(t)
		cfg := oauthConfig(p, cb.URL())
		tok := login(t, p, cfg, cb)
		tok.Expiry = time.Now().Add(-time.Minute)
		got, err := cfg.TokenSource(ctx, tok).Token()
		if err != nil {
			t.Fatal(err)
		}
		if got.RefreshToken != tok.RefreshToken || got.AccessToken == tok.AccessToken {
			t.Errorf("refreshed token: same refresh %v, same access %v", got.RefreshToken == tok.RefreshToken, got.AccessToken == tok.AccessToken)
		}
	})
	t.Run("narrower scope and IAP audience", func(t *testing.T) {
		p := startProvider(t, Options{AutoApprove: true})
		cb := newCallback(t)
		tok := login(t, p, oauthConfig(p, cb.URL()), cb)
		form := refreshForm(p, tok.RefreshToken)
		form.Set("scope", "openid email")
		form.Set("audience", "iap-client.apps.local")
		resp, body := postForm(t, p.Issuer()+"/token", form, nil)
		if resp.StatusCode != 200 || body["scope"] != "openid email" {
			t.Fatalf("refresh = %d %v", resp.StatusCode, body)
		}
		op, err := oidc.NewProvider(ctx, p.Issuer())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := op.Verifier(&oidc.Config{ClientID: "iap-client.apps.local"}).Verify(ctx, body["id_token"].(string)); err != nil {
			t.Errorf("ID token for the IAP audience: %v", err)
		}
		form.Set("scope", "openid https://www.googleapis.com/auth/drive")
		resp, body = postForm(t, p.Issuer()+"/token", form, nil)
		wantOAuthError(t, resp, body, 400, "invalid_scope")
	})
}

func TestRevokeAll(t *testing.T) {
	p := startProvider(t, Options{AutoApprove: true})
	cb := newCallback(t)
	cfg := oauthConfig(p, cb.URL())
	a := login(t, p, cfg, cb)
	b := login(t, p, cfg, cb)
	p.RevokeAll()
	for _, tok := range []string{a.RefreshToken, b.RefreshToken} {
		resp, body := postForm(t, p.Issuer()+"/token", refreshForm(p, tok), nil)
		wantOAuthError(t, resp, body, 400, "invalid_grant")
	}
	// A new sign-in works again.
	c := login(t, p, cfg, cb)
	resp, body := postForm(t, p.Issuer()+"/token", refreshForm(p, c.RefreshToken), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("refresh after a new sign-in = %d %v", resp.StatusCode, body)
	}
	if s := p.Stats(); s.InvalidGrants != 2 {
		t.Errorf("InvalidGrants = %d, want 2", s.InvalidGrants)
	}
}

func TestRevokeEndpoint(t *testing.T) {
	p := startProvider(t, Options{AutoApprove: true})
	cb := newCallback(t)
	cfg := oauthConfig(p, cb.URL())

	t.Run("GET is not allowed", func(t *testing.T) {
		resp, err := http.Get(p.Issuer() + "/revoke?token=x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Errorf("GET /revoke = %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
	t.Run("refresh token", func(t *testing.T) {
		tok := login(t, p, cfg, cb)
		resp, _ := postForm(t, p.Issuer()+"/revoke", url.Values{"token": {tok.RefreshToken}}, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke = %d", resp.StatusCode)
		}
		resp, body := postForm(t, p.Issuer()+"/token", refreshForm(p, tok.RefreshToken), nil)
		wantOAuthError(t, resp, body, 400, "invalid_grant")
		if r, _ := getJSON(t, p.Issuer()+"/userinfo", bearerHeader(tok.AccessToken)); r.StatusCode != 401 {
			t.Errorf("access token of a revoked grant: userinfo = %d, want 401", r.StatusCode)
		}
		resp, body = postForm(t, p.Issuer()+"/revoke", url.Values{"token": {tok.RefreshToken}}, nil)
		if resp.StatusCode != 400 || body["error"] != "invalid_token" {
			t.Errorf("second revoke = %d %v, want 400 invalid_token", resp.StatusCode, body)
		}
	})
	t.Run("access token revokes its refresh token", func(t *testing.T) {
		tok := login(t, p, cfg, cb)
		resp, _ := postForm(t, p.Issuer()+"/revoke", url.Values{"token": {tok.AccessToken}}, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke = %d", resp.StatusCode)
		}
		resp, body := postForm(t, p.Issuer()+"/token", refreshForm(p, tok.RefreshToken), nil)
		wantOAuthError(t, resp, body, 400, "invalid_grant")
	})
	t.Run("unknown token", func(t *testing.T) {
		resp, body := postForm(t, p.Issuer()+"/revoke", url.Values{"token": {"1//unknown"}}, nil)
		if resp.StatusCode != 400 || body["error"] != "invalid_token" {
			t.Errorf("revoke unknown = %d %v, want 400 invalid_token", resp.StatusCode, body)
		}
	})
	if s := p.Stats(); s.Revocations != 2 {
		t.Errorf("Revocations = %d, want 2", s.Revocations)
	}
}

func TestUserinfoRefusesBadTokens(t *testing.T) {
	clock := newFakeClock()
	p := startProvider(t, Options{AutoApprove: true, Now: clock.Now, AccessTTL: time.Minute})
	cb := newCallback(t)
	tok := login(t, p, oauthConfig(p, cb.URL()), cb)
	tests := map[string]struct {
		header http.Header
		before func()
	}{
		"none":    {header: nil},
		"unknown": {header: bearerHeader("ya29.unknown")},
		"basic":   {header: http.Header{"Authorization": {"Basic " + tok.AccessToken}}},
		"expired": {header: bearerHeader(tok.AccessToken), before: func() { clock.Advance(2 * time.Minute) }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			resp, body := getJSON(t, p.Issuer()+"/userinfo", tc.header)
			if resp.StatusCode != 401 || body["error"] != "invalid_token" || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("userinfo = %d %v %q", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestTamper(t *testing.T) {
	ctx := context.Background()
	p := startProvider(t, Options{AutoApprove: true})
	cb := newCallback(t)
	cfg := oauthConfig(p, cb.URL())
	op, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	verifier := op.Verifier(&oidc.Config{ClientID: p.ClientID()})
	tests := map[Tamper]struct {
		check func(error) bool
	}{
		TamperBadSignature:  {func(err error) bool { return strings.Contains(err.Error(), "failed to verify signature") }},
		TamperWrongAudience: {func(err error) bool { return strings.Contains(err.Error(), "expected audience") }},
		TamperExpired: {func(err error) bool {
			var e *oidc.TokenExpiredError
			return errors.As(err, &e)
		}},
		TamperWrongIssuer: {func(err error) bool { return strings.Contains(err.Error(), "different provider") }},
	}
	for tamper, tc := range tests {
		t.Run(strings.TrimPrefix(tamperName(tamper), "Tamper"), func(t *testing.T) {
			p.Tamper(tamper)
			tok := login(t, p, cfg, cb)
			_, err := verifier.Verify(ctx, tok.Extra("id_token").(string))
			if err == nil || !tc.check(err) {
				t.Fatalf("Verify = %v, want the %s failure", err, tamperName(tamper))
			}
			// Only the next token is broken.
			good := login(t, p, cfg, cb)
			if _, err := verifier.Verify(ctx, good.Extra("id_token").(string)); err != nil {
				t.Fatalf("the token after a tampered one: %v", err)
			}
		})
	}
}

func tamperName(t Tamper) string {
	return map[Tamper]string{TamperBadSignature: "BadSignature", TamperWrongAudience: "WrongAudience", TamperExpired: "Expired", TamperWrongIssuer: "WrongIssuer"}[t]
}

func TestFailNext(t *testing.T) {
	ctx := context.Background()
	p := startProvider(t, Options{AutoApprove: true})
	cb := newCallback(t)
	cfg := oauthConfig(p, cb.URL())

	p.FailNext("discovery", http.StatusServiceUnavailable, "text/plain", "down for maintenance")
	if _, err := oidc.NewProvider(ctx, p.Issuer()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("discovery during a fault: %v, want a 503 error", err)
	}
	if _, err := oidc.NewProvider(ctx, p.Issuer()); err != nil {
		t.Fatalf("discovery after the fault: %v", err)
	}

	tok := login(t, p, cfg, cb)
	tok.Expiry = time.Now().Add(-time.Minute)
	// A 200 that carries an error is an error too (x/oauth2 treats it so).
	p.FailNext("token", http.StatusOK, "application/json", `{"error":"invalid_rapt","error_description":"reauth related error"}`)
	p.FailNext("token", http.StatusInternalServerError, "application/json", `{"error":"server_error"}`)
	for _, want := range []string{"invalid_rapt", "server_error"} {
		_, err := cfg.TokenSource(ctx, tok).Token()
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != want {
			t.Fatalf("refresh during a fault: %v, want %s", err, want)
		}
	}
	if _, err := cfg.TokenSource(ctx, tok).Token(); err != nil {
		t.Fatalf("refresh after the faults: %v", err)
	}
	if s := p.Stats(); s.Refreshes != 1 {
		t.Errorf("Refreshes = %d, want 1 (faulted requests are not counted)", s.Refreshes)
	}

	p.FailNext("authorize", http.StatusInternalServerError, "text/html", "<h1>oops</h1>")
	status, body, err := Browse(ctx, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), true)
	if err == nil || status != 500 || body != "<h1>oops</h1>" {
		t.Errorf("Browse during an authorize fault = %d %q %v", status, body, err)
	}
}

func TestSetDelay(t *testing.T) {
	p := startProvider(t, Options{})
	p.SetDelay("jwks", 10*time.Second)
	client := &http.Client{Timeout: 100 * time.Millisecond}
	start := time.Now()
	_, err := client.Get(p.Issuer() + "/jwks")
	if err == nil {
		t.Fatal("GET /jwks with a 10s delay and a 100ms timeout succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the client waited %v", d)
	}
	// Other endpoints are not slowed.
	if resp, err := client.Get(p.Issuer() + "/.well-known/openid-configuration"); err != nil {
		t.Errorf("discovery: %v", err)
	} else {
		resp.Body.Close()
	}
	p.SetDelay("jwks", 0)
	resp, err := client.Get(p.Issuer() + "/jwks")
	if err != nil {
		t.Fatalf("GET /jwks after clearing the delay: %v", err)
	}
	resp.Body.Close()

	p.SetDelay("token", 150*time.Millisecond)
	start = time.Now()
	resp, _ = postForm(t, p.Issuer()+"/token", url.Values{}, nil)
	if d := time.Since(start); d < 150*time.Millisecond || resp.StatusCode != 400 {
		t.Errorf("delayed token request took %v and answered %d", d, resp.StatusCode)
	}
}

func TestAuthorizeValidation(t *testing.T) {
	p := startProvider(t, Options{AutoApprove: true})
	v := oauth2.GenerateVerifier()
	const cbURL = "http://127.0.0.1:5555/callback"
	tests := map[string]struct {
		set, del []string // set: key, value pairs
		// page: an HTML error page, no redirect; otherwise a redirect with error (or a code when "").
		page   int
		errStr string
	}{
		"ok":                       {},
		"ipv6 loopback":            {set: []string{"redirect_uri", "http://[::1]:5555/cb"}},
		"localhost":                {set: []string{"redirect_uri", "http://localhost:8000/"}},
		"redirect with a query":    {set: []string{"redirect_uri", "http://127.0.0.1:5555/cb?x=1"}},
		"unknown client":           {set: []string{"client_id", "evil"}, page: 401},
		"missing client":           {del: []string{"client_id"}, page: 400},
		"https redirect":           {set: []string{"redirect_uri", "https://evil.example/cb"}, page: 400},
		"non-loopback http":        {set: []string{"redirect_uri", "http://192.168.1.5:5555/cb"}, page: 400},
		"no port":                  {set: []string{"redirect_uri", "http://127.0.0.1/cb"}, page: 400},
		"fragment":                 {set: []string{"redirect_uri", "http://127.0.0.1:5555/cb#x"}, page: 400},
		"missing redirect":         {del: []string{"redirect_uri"}, page: 400},
		"missing code_challenge":   {del: []string{"code_challenge"}, errStr: "invalid_request"},
		"plain challenge":          {set: []string{"code_challenge_method", "plain"}, errStr: "invalid_request"},
		"missing challenge method": {del: []string{"code_challenge_method"}, errStr: "invalid_request"},
		"bad challenge":            {set: []string{"code_challenge", "short"}, errStr: "invalid_request"},
		"token response type":      {set: []string{"response_type", "token"}, errStr: "unsupported_response_type"},
		"missing response type":    {del: []string{"response_type"}, errStr: "invalid_request"},
		"missing scope":            {del: []string{"scope"}, errStr: "invalid_request"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			q := authParams(p, cbURL, v)
			for i := 0; i < len(tc.set); i += 2 {
				q.Set(tc.set[i], tc.set[i+1])
			}
			for _, k := range tc.del {
				q.Del(k)
			}
			resp := authorize(t, p, q)
			if tc.page != 0 {
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != tc.page || resp.Header.Get("Location") != "" ||
					!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(b), "Access blocked") {
					t.Errorf("got %d Location=%q, want an error page %d", resp.StatusCode, resp.Header.Get("Location"), tc.page)
				}
				return
			}
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status = %d, want 302", resp.StatusCode)
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			got := loc.Query()
			if got.Get("state") != "xyz" {
				t.Errorf("state = %q, want xyz", got.Get("state"))
			}
			if !strings.HasPrefix(loc.String(), q.Get("redirect_uri")[:strings.LastIndexByte(q.Get("redirect_uri"), '/')]) {
				t.Errorf("redirected to %s, not to %s", loc, q.Get("redirect_uri"))
			}
			if tc.errStr == "" {
				if got.Get("code") == "" || got.Get("error") != "" {
					t.Errorf("redirect = %s, want a code", loc)
				}
				if strings.Contains(q.Get("redirect_uri"), "x=1") && got.Get("x") != "1" {
					t.Errorf("the redirect_uri's own query was lost: %s", loc)
				}
				return
			}
			if got.Get("error") != tc.errStr || got.Get("code") != "" || got.Get("error_description") == "" {
				t.Errorf("redirect = %s, want error=%s", loc, tc.errStr)
			}
		})
	}
}

func TestConsentPage(t *testing.T) {
	p := startProvider(t, Options{})
	cb := newCallback(t)
	q := authParams(p, cb.URL(), oauth2.GenerateVerifier())
	q.Set("scope", "openid email profile")
	resp := authorize(t, p, q)
	b, _ := io.ReadAll(resp.Body)
	page := string(b)
	if resp.StatusCode != 200 {
		t.Fatalf("consent page = %d", resp.StatusCode)
	}
	for _, want := range []string{"dev@example.test", p.ClientID(), "See your primary email address", "Stay signed in", `value="allow"`, `value="cancel"`, `action="/authorize/decide"`} {
		if !strings.Contains(page, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	for _, leak := range []string{q.Get("code_challenge"), "xyz"} {
		if strings.Contains(page, leak) {
			t.Errorf("consent page carries request parameter %q; it must hold only a request id", leak)
		}
	}
	id := requestID.FindStringSubmatch(page)
	if id == nil {
		t.Fatal("no request_id in the consent form")
	}
	decide := func(cookies []*http.Cookie, reqID string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, p.Issuer()+"/authorize/decide",
			strings.NewReader(url.Values{"request_id": {reqID}, "action": {"allow"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range cookies {
			req.AddCookie(c)
		}
		r, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r
	}
	if r := decide(nil, id[1]); r.StatusCode != http.StatusForbidden {
		t.Errorf("decide without the browser's cookie = %d, want 403", r.StatusCode)
	}
	if r := decide(resp.Cookies(), id[1]); r.StatusCode != http.StatusFound || !strings.Contains(r.Header.Get("Location"), "code=") {
		t.Errorf("decide = %d %q, want a redirect with a code", r.StatusCode, r.Header.Get("Location"))
	}
	if r := decide(resp.Cookies(), id[1]); r.StatusCode != http.StatusBadRequest {
		t.Errorf("answering twice = %d, want 400", r.StatusCode)
	}
}

func TestBrowseDenied(t *testing.T) {
	p := startProvider(t, Options{})
	cb := newCallback(t)
	cfg := oauthConfig(p, cb.URL())
	status, body, err := Browse(context.Background(), cfg.AuthCodeURL("st-9", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), false)
	if err != nil {
		t.Fatalf("Browse: %v", err)
	}
	q := cb.query()
	if status != http.StatusBadRequest || !strings.Contains(body, "access_denied") ||
		q.Get("error") != "access_denied" || q.Get("state") != "st-9" || q.Get("code") != "" {
		t.Errorf("Browse = %d %q, callback query %v", status, body, q)
	}
}

func TestBrowseErrorPage(t *testing.T) {
	p := startProvider(t, Options{})
	status, body, err := Browse(context.Background(), p.Issuer()+"/authorize?client_id=nobody", true)
	if err == nil || status != 401 || !strings.Contains(body, "invalid_client") {
		t.Errorf("Browse = %d, %v; body has invalid_client: %v", status, err, strings.Contains(body, "invalid_client"))
	}
}

func TestConcurrentUse(t *testing.T) {
	p := startProvider(t, Options{AutoApprove: true, RotateRefreshTokens: true})
	cb := newCallback(t)
	tok := login(t, p, oauthConfig(p, cb.URL()), cb)
	// Many refreshes of one rotating token race: exactly one wins.
	const n = 8
	results := make(chan int, n)
	for range n {
		go func() {
			p.Tamper(TamperNone)
			p.SetDelay("jwks", 0)
			_ = p.Stats()
			req, _ := http.NewRequest(http.MethodPost, p.Issuer()+"/token", strings.NewReader(refreshForm(p, tok.RefreshToken).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- 0
				return
			}
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	ok := 0
	for range n {
		if <-results == 200 {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent refreshes of one rotating token succeeded, want 1", ok, n)
	}
}

// TestGoogleRulesRefreshTokens: with GoogleRules the demo gives a refresh token as
// Google does: for access_type=offline at the first consent, afterwards only with
// prompt=consent, never for the offline_access scope, which discovery does not list.
func TestGoogleRulesRefreshTokens(t *testing.T) {
	p := startProvider(t, Options{GoogleRules: true, AutoApprove: true})
	resp, err := http.Get(p.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scopes []string `json:"scopes_supported"`
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || slices.Contains(doc.Scopes, "offline_access") {
		t.Errorf("scopes_supported = %v, %v; want no offline_access", doc.Scopes, err)
	}
	for _, tc := range []struct {
		name, scope, accessType, prompt string
		want                            bool
	}{
		{"first consent, access_type=offline", "openid email", "offline", "", true},
		{"again, access_type=offline only", "openid email", "offline", "", false},
		{"again, with prompt=consent", "openid email", "offline", "consent", true},
		{"offline_access scope instead", "openid email offline_access", "", "consent", false},
	} {
		body := signInForTokens(t, p, url.Values{"scope": {tc.scope}, "access_type": {tc.accessType}, "prompt": {tc.prompt}})
		if _, got := body["refresh_token"]; got != tc.want {
			t.Errorf("%s: refresh_token present = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// signInForTokens runs an auto-approved code flow with the authorization
// parameters in set (an empty value leaves the parameter out) and returns the
// token endpoint's JSON answer.
func signInForTokens(t *testing.T, p *Provider, set url.Values) map[string]any {
	t.Helper()
	cb := newCallback(t)
	v := oauth2.GenerateVerifier()
	q := authParams(p, cb.URL(), v)
	for k := range set {
		if set.Get(k) == "" {
			q.Del(k)
		} else {
			q.Set(k, set.Get(k))
		}
	}
	code := codeFrom(t, authorize(t, p, q))
	resp, body := postForm(t, p.Issuer()+"/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {cb.URL()},
		"code_verifier": {v}, "client_id": {p.ClientID()}, "client_secret": {p.ClientSecret()},
	}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token = %d %v", resp.StatusCode, body)
	}
	return body
}
