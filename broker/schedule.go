package broker

import "time"

const (
	// refreshAt is the share of a token's lifetime after which the agent
	// refreshes it: early enough that a slow or failing issuer leaves time
	// to retry, late enough not to hammer it.
	refreshAt = 0.8
	// refreshJitter spreads refreshes of many agents by up to ±5% of the
	// lifetime so a team's laptops do not refresh in lock-step.
	refreshJitter = 0.05
	// minLifetime guards against issuers that send expires_in of 0 or a few
	// seconds: never schedule refreshes closer together than this.
	minLifetime = 30 * time.Second
	// defaultLifetime is assumed when the issuer sends no expires_in.
	defaultLifetime = time.Hour
)

// nextRefresh returns when a token issued at issued and expiring at expiry
// should be refreshed: at about 80% of its lifetime, moved by jitter in
// [-1, 1] times 5% of the lifetime. A zero expiry means the issuer did not
// say; the token is then treated as living defaultLifetime.
func nextRefresh(issued, expiry time.Time, jitter float64) time.Time {
	life := expiry.Sub(issued)
	if expiry.IsZero() {
		life = defaultLifetime
	}
	if life < minLifetime {
		life = minLifetime
	}
	jitter = max(-1, min(1, jitter))
	at := float64(life) * (refreshAt + refreshJitter*jitter)
	return issued.Add(time.Duration(at))
}

// backoff returns how long to wait before retrying after the n-th
// consecutive failed refresh (n ≥ 1): 5s, 10s, 20s … capped at 5 minutes.
// x/oauth2 does not cache failed refreshes, so without this a broken
// issuer would be asked on every proxied request.
func backoff(n int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}
