package main

import (
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker"
)

// TestStatusNote: the status table's NOTE column keeps the reason a refresh fails
// beside the expiry, and says "expired" for a token past it.
func TestStatusNote(t *testing.T) {
	now := time.Date(2026, 12, 2, 18, 0, 0, 0, time.Local)
	tests := map[string]struct {
		st   broker.ProfileStatus
		want string
	}{
		"signed out":                  {broker.ProfileStatus{}, ""},
		"fresh token":                 {broker.ProfileStatus{Expiry: now.Add(time.Hour)}, "token expires 7:00PM"},
		"expired token":               {broker.ProfileStatus{Expiry: now.Add(-time.Minute)}, "token expired 5:59PM"},
		"tomorrow":                    {broker.ProfileStatus{Expiry: now.Add(24 * time.Hour)}, "token expires Dec 3 6:00PM"},
		"sign-in required":            {broker.ProfileStatus{Reason: "the issuer refused"}, "the issuer refused"},
		"failing refresh":             {broker.ProfileStatus{Expiry: now.Add(-time.Minute), Reason: "issuer unreachable"}, "token expired 5:59PM; issuer unreachable"},
		"refresh failed, still valid": {broker.ProfileStatus{Expiry: now.Add(time.Minute), Reason: "issuer unreachable"}, "token expires 6:01PM; issuer unreachable"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := statusNote(tc.st, now); got != tc.want {
				t.Errorf("statusNote = %q, want %q", got, tc.want)
			}
		})
	}
}
