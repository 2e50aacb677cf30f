package demo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGateway(t *testing.T) {
	ctx := context.Background()
	p := startProvider(t, Options{AutoApprove: true})
	cb := newCallback(t)
	cfg := oauthConfig(p, cb.URL())
	gw, err := NewGateway(ctx, p.Issuer(), p.ClientID())
	if err != nil {
		t.Fatalf("NewGateway: %v", err)
	}
	idToken := func(tamper Tamper) string {
		p.Tamper(tamper)
		return login(t, p, cfg, cb).Extra("id_token").(string)
	}
	good := login(t, p, cfg, cb)
	tests := map[string]struct {
		header string
		token  string // also checked not to be echoed
		status int
		code   string
	}{
		"good id token":    {token: good.Extra("id_token").(string), status: 200},
		"lowercase scheme": {header: "bearer " + good.Extra("id_token").(string), status: 200},
		"missing":          {status: 401, code: "missing_token"},
		"not bearer":       {header: "Basic Zm9vOmJhcg==", status: 401, code: "missing_token"},
		"garbage":          {token: "not-a-jwt", status: 401, code: "invalid_token"},
		"access token":     {token: good.AccessToken, status: 401, code: "invalid_token"},
		"bad signature":    {token: idToken(TamperBadSignature), status: 401, code: "invalid_token"},
		"expired":          {token: idToken(TamperExpired), status: 401, code: "token_expired"},
		"wrong audience":   {token: idToken(TamperWrongAudience), status: 401, code: "wrong_audience"},
		"wrong issuer":     {token: idToken(TamperWrongIssuer), status: 401, code: "wrong_issuer"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/api/items?x=1", nil)
			switch {
			case tc.header != "":
				req.Header.Set("Authorization", tc.header)
			case tc.token != "":
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			gw.ServeHTTP(rec, req)
			body := rec.Body.String()
			if tc.token != "" && strings.Contains(body, tc.token) {
				t.Fatal("the gateway echoed the token")
			}
			var m map[string]string
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				t.Fatalf("body is not JSON: %q", body)
			}
			if rec.Code != tc.status {
				t.Fatalf("status = %d, want %d: %v", rec.Code, tc.status, m)
			}
			if tc.status == 200 {
				want := map[string]string{"message": "hello, dev@example.test", "email": "dev@example.test", "sub": "1000001", "method": "POST", "path": "/api/items"}
				for k, v := range want {
					if m[k] != v {
						t.Errorf("%s = %q, want %q", k, m[k], v)
					}
				}
				return
			}
			if m["error"] != tc.code || m["hint"] == "" {
				t.Errorf("body = %v, want error %s with a hint", m, tc.code)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
	t.Run("another audience's gateway refuses the token", func(t *testing.T) {
		other, err := NewGateway(ctx, p.Issuer(), "iap-client.apps.local")
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", "Bearer "+good.Extra("id_token").(string))
		rec := httptest.NewRecorder()
		other.ServeHTTP(rec, req)
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), "wrong_audience") {
			t.Errorf("got %d %s", rec.Code, rec.Body)
		}
	})
}

func TestNewGatewayNeedsTheIssuer(t *testing.T) {
	p := startProvider(t, Options{})
	issuer := p.Issuer()
	p.Close()
	if _, err := NewGateway(context.Background(), issuer, "x"); err == nil || !strings.Contains(err.Error(), "is the demo identity provider running") {
		t.Errorf("NewGateway against a stopped issuer: %v", err)
	}
}
