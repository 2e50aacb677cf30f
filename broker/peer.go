package broker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/gatepass-dev/gatepass/internal/peer"
)

// The sign-in's loopback listener (RFC 8252 §7.3) takes the issuer's redirect on
// 127.0.0.1, which every local account can reach, not only the developer's browser.
// Another user who learns the sign-in's state (or simply races the real browser) could
// sign in at the issuer with an account of their own and send that redirect here: the
// listener would exchange their code with our PKCE verifier, the nonce would match, and
// the developer would be signed in as the other user; an error=access_denied would
// cancel the sign-in. Where the operating system says who holds the other end of a
// loopback connection (Linux, through netlink sock_diag), the listener therefore serves
// only the developer's own processes and root's (root can read the keychain anyway).
// A refused request gets a 403 page before its path or query is looked at, so it can
// neither finish nor cancel the sign-in, which goes on waiting for the real browser.
// Where the system cannot tell, the listener serves as before.

var (
	// realProbeErr is peer.Probe of peer.Owner, asked once per process: the
	// answer does not change while it runs.
	realProbeOnce sync.Once
	realProbeErr  error
)

// callbackPeers decides, per request to the loopback listener, whether its client may
// take part in the sign-in. A nil *callbackPeers lets everyone in.
type callbackPeers struct {
	owner   func(net.Conn) (uint32, error)
	log     *slog.Logger
	profile string

	mu     sync.Mutex
	logged map[uint32]bool // refusals logged, per uid: one line each per sign-in
	// loggedUnknown: a refusal of a client whose owner could not be told was
	// logged (once per sign-in too, so a client that keeps closing early cannot
	// flood the terminal).
	loggedUnknown bool
	// loggedExternal: a client from outside this system was let in and logged.
	loggedExternal bool
}

// callbackPeers returns the check for one sign-in of profile, nil where the system
// cannot tell who connects. Tests set b.peerOwner; its probe runs on every sign-in.
func (b *Broker) callbackPeers(profile string) *callbackPeers {
	owner, probeErr := b.peerOwner, error(nil)
	if owner != nil {
		probeErr = peer.Probe(owner)
	} else {
		owner = peer.Owner
		realProbeOnce.Do(func() {
			realProbeErr = peer.Probe(peer.Owner)
			if realProbeErr != nil && !errors.Is(realProbeErr, peer.ErrUnsupported) {
				b.deps.Log.Warn("the sign-in cannot tell which user's process delivers the browser's redirect, so any local user's could", "why", realProbeErr.Error())
			}
		})
		probeErr = realProbeErr
	}
	if probeErr != nil {
		return nil
	}
	return &callbackPeers{owner: owner, log: b.deps.Log, profile: profile, logged: map[uint32]bool{}}
}

// connKey is the context key under which the listener's http.Server keeps each
// request's connection (http.Server.ConnContext), for the owner lookup.
type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// refuse answers r with a 403 page and reports true when its client may not take part
// in the sign-in. The page and the log line name users, never the sign-in's state,
// code or addresses.
func (g *callbackPeers) refuse(w http.ResponseWriter, r *http.Request) bool {
	if g == nil {
		return false
	}
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if c == nil {
		// Not served through the listener's ConnContext: nobody can say who sent
		// it, so it is treated as a stranger's.
		errorPage(w, http.StatusForbidden, "gatepass could not tell who sent this request",
			"This sign-in takes the browser's redirect only from "+peer.UserName(peer.Self())+"'s programs; it goes on waiting.", "")
		return true
	}
	uid, err := g.owner(c)
	if errors.Is(err, peer.ErrExternal) {
		// From outside this system (WSL2's mirrored networking brings the Windows
		// browser's redirect this way): nobody here owns it, as on a system that
		// cannot tell at all, where every client is let in.
		g.mu.Lock()
		first := !g.loggedExternal
		g.loggedExternal = true
		g.mu.Unlock()
		if first {
			g.log.Warn("sign-in redirect from outside this system let in (WSL2 mirrored networking or a VM's port forward?): nobody here owns it, so it cannot be checked", "profile", g.profile)
		}
		return false
	}
	if err != nil {
		g.mu.Lock()
		first := !g.loggedUnknown
		g.loggedUnknown = true
		g.mu.Unlock()
		if first {
			g.log.Warn("sign-in redirect refused", "profile", g.profile, "reason", "could not tell which user's process connected: "+err.Error())
		}
		errorPage(w, http.StatusForbidden, "gatepass could not tell who sent this request",
			"This sign-in takes the browser's redirect only from "+peer.UserName(peer.Self())+"'s programs, and the system did not say whose this one was ("+err.Error()+"). The sign-in goes on waiting.",
			"Reload this page; if this persists, start again with `gatepass login`.")
		return true
	}
	if peer.Trusted(uid) {
		return false
	}
	g.mu.Lock()
	first := !g.logged[uid]
	g.logged[uid] = true
	g.mu.Unlock()
	if first {
		g.log.Warn("sign-in redirect refused: it came from another user's process; the sign-in goes on waiting for your browser",
			"profile", g.profile, "from", peer.UserName(uid), "signing_in", peer.UserName(peer.Self()))
	}
	errorPage(w, http.StatusForbidden, "This sign-in belongs to another user",
		"gatepass is signing in "+peer.UserName(peer.Self())+", and this browser runs as "+peer.UserName(uid)+", so the request was refused and changed nothing.",
		"Each user signs in with a gatepass of their own: run `gatepass login` as "+peer.UserName(uid)+".")
	return true
}
