package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/internal/issuertest"
)

// TestTokenMinTTLInvalid: a --min-ttl that is not a duration is a usage error
// (exit 2) that says what a valid value looks like, not the flag package's bare
// "parse error"; valid and negative values keep their meaning.
func TestTokenMinTTLInvalid(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.toml")
	for _, v := range []string{"abc", "5", "1e3s", "99999999999999h", ""} {
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"--config", missing, "token", "--min-ttl", v}, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), "such as 90s, 5m or 1h") || strings.Contains(errb.String(), "parse error") {
			t.Errorf("token --min-ttl %q: exit %d, stderr %q; want %d and an example of a valid duration", v, code, errb.String(), exitUsage)
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--config", missing, "token", "--min-ttl", "-1s"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "must not be negative") {
		t.Errorf("token --min-ttl -1s: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	// A valid value gets past the flags, to the (missing) config.
	if code := run(context.Background(), []string{"--config", missing, "token", "--min-ttl", "90s"}, &out, &errb); !strings.Contains(errb.String(), "no config file") {
		t.Errorf("token --min-ttl 90s: exit %d, stderr %q; want the missing config's error", code, errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"token", "--help"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "-min-ttl duration") || !strings.Contains(out.String(), "(default 1m0s)") {
		t.Errorf("token --help: exit %d, want -min-ttl listed as a duration with its default:\n%s", code, out.String())
	}
}

// TestDoctorGoogleSecret: doctor fails a Google profile without its client secret,
// with where to get it, on a line of its own: discovery answers, and the sign-in
// would still fail, after the consent.
func TestDoctorGoogleSecret(t *testing.T) {
	cfg := writeConfig(t, `
[profiles.work]
issuer = "https://accounts.google.com"
client_id = "1234-abc.apps.googleusercontent.com"
gateways = ["api.example.test"]
`)
	out, _, code := runGatepass(t, nil, "--config", cfg, "doctor")
	if code != exitFailure || !regexp.MustCompile(`(?m)^FAIL  secret +profile work: client_secret is missing.*Credentials`).MatchString(out) {
		t.Errorf("doctor on a Google profile without a secret: exit %d\n%s", code, out)
	}
}

// TestDoctorIssuerHint: doctor's issuer check gives a fix with the error when it
// gets no answer, as its other checks do: the network for a closed port, trust for
// a certificate this machine does not accept.
func TestDoctorIssuerHint(t *testing.T) {
	tests := issuertest.Unanswered(t)
	client := broker.NewHTTPClient(&broker.Config{}, 5*time.Second)
	for name, tc := range tests {
		err := checkIssuer(context.Background(), client, &broker.Profile{Name: "work", Issuer: tc.Issuer, ClientID: "x"})
		if err == nil {
			t.Errorf("%s: the issuer check passed", name)
			continue
		}
		for _, w := range tc.Want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", name, err, w)
			}
		}
		for _, n := range tc.Not {
			if strings.Contains(err.Error(), n) {
				t.Errorf("%s: %q says %q", name, err, n)
			}
		}
	}
}
