package broker

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestNextRefresh(t *testing.T) {
	issued := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		expiry time.Time
		jitter float64
		want   time.Duration // after issued
	}{
		"one hour, no jitter: 80%":           {issued.Add(time.Hour), 0, 48 * time.Minute},
		"one hour, jitter +1: 85%":           {issued.Add(time.Hour), 1, 51 * time.Minute},
		"one hour, jitter -1: 75%":           {issued.Add(time.Hour), -1, 45 * time.Minute},
		"one hour, jitter +0.5: 82.5%":       {issued.Add(time.Hour), 0.5, 49*time.Minute + 30*time.Second},
		"jitter above 1 is clamped":          {issued.Add(time.Hour), 7, 51 * time.Minute},
		"jitter below -1 is clamped":         {issued.Add(time.Hour), -3, 45 * time.Minute},
		"ten minutes":                        {issued.Add(10 * time.Minute), 0, 8 * time.Minute},
		"zero expiry: default lifetime":      {time.Time{}, 0, 48 * time.Minute},
		"zero expiry with jitter":            {time.Time{}, 1, 51 * time.Minute},
		"tiny lifetime: floor of 30s":        {issued.Add(5 * time.Second), 0, 24 * time.Second},
		"zero lifetime: floor of 30s":        {issued, 0, 24 * time.Second},
		"expired before issue: floor of 30s": {issued.Add(-time.Hour), 0, 24 * time.Second},
		"exactly the floor":                  {issued.Add(30 * time.Second), 0, 24 * time.Second},
		"floor with jitter -1":               {issued.Add(time.Second), -1, 22*time.Second + 500*time.Millisecond},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := nextRefresh(issued, tc.expiry, tc.jitter)
			if d := got.Sub(issued); d != tc.want {
				t.Errorf("nextRefresh(issued, issued%+v, %v) = issued%+v, want issued%+v",
					tc.expiry.Sub(issued), tc.jitter, d, tc.want)
			}
		})
	}
}

// TestNextRefreshBounds checks, for many lifetimes and jitters, that the
// refresh lands within 80% ± 5% of the (floored) lifetime, strictly after
// issue and strictly before expiry.
func TestNextRefreshBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	issued := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for range 5000 {
		life := time.Duration(rng.Int64N(int64(48 * time.Hour)))
		jitter := rng.Float64()*2 - 1
		got := nextRefresh(issued, issued.Add(life), jitter)
		eff := max(life, minLifetime)
		lo := issued.Add(time.Duration(float64(eff) * 0.75))
		hi := issued.Add(time.Duration(float64(eff) * 0.85))
		if got.Before(lo.Add(-time.Nanosecond)) || got.After(hi.Add(time.Nanosecond)) {
			t.Fatalf("life %v jitter %.3f: refresh at +%v, want within [+%v, +%v]",
				life, jitter, got.Sub(issued), lo.Sub(issued), hi.Sub(issued))
		}
		if !got.After(issued) {
			t.Fatalf("life %v jitter %.3f: refresh at +%v, not after issue", life, jitter, got.Sub(issued))
		}
		if life >= minLifetime && !got.Before(issued.Add(life)) {
			t.Fatalf("life %v jitter %.3f: refresh at +%v, not before expiry", life, jitter, got.Sub(issued))
		}
	}
}

func TestBackoff(t *testing.T) {
	tests := map[string]struct {
		n    int
		want time.Duration
	}{
		"first failure":      {1, 5 * time.Second},
		"second failure":     {2, 10 * time.Second},
		"third failure":      {3, 20 * time.Second},
		"fourth failure":     {4, 40 * time.Second},
		"fifth failure":      {5, 80 * time.Second},
		"sixth failure":      {6, 160 * time.Second},
		"seventh: capped":    {7, 5 * time.Minute},
		"many: capped":       {100, 5 * time.Minute},
		"huge: no overflow":  {1 << 30, 5 * time.Minute},
		"zero: first step":   {0, 5 * time.Second},
		"negative: no panic": {-4, 5 * time.Second},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := backoff(tc.n); got != tc.want {
				t.Errorf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
			}
		})
	}
}

func TestBackoffMonotonic(t *testing.T) {
	prev := time.Duration(0)
	for n := 1; n <= 200; n++ {
		d := backoff(n)
		if d < prev {
			t.Fatalf("backoff(%d) = %v < backoff(%d) = %v", n, d, n-1, prev)
		}
		if d <= 0 || d > 5*time.Minute {
			t.Fatalf("backoff(%d) = %v, want in (0, 5m]", n, d)
		}
		prev = d
	}
}
