package broker

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// idClaims are the ID-token claims gatepass uses.
type idClaims struct {
	Subject string `json:"sub"`
	Email   string `json:"email"`
	Nonce   string `json:"nonce"`
}

// verifiedID is an ID token that passed verification, with its claims.
type verifiedID struct {
	raw    string
	expiry time.Time
	claims idClaims
}

// session is one profile's state in this process.
//
// refreshMu serialises refreshes (one in flight per profile) and is held
// across network calls; mu guards the fields and is never held across I/O.
// loginMu allows one browser sign-in per profile at a time.
type session struct {
	p *Profile

	refreshMu sync.Mutex
	loginMu   sync.Mutex

	mu     sync.Mutex
	prov   *provider
	loaded bool // entry was read from the keychain in this process
	// loading is closed when the keychain read in flight ends (nil: none);
	// loadErr is how the last read failed. Callers arriving during a read
	// wait for it rather than ask a hung keychain again.
	loading chan struct{}
	loadErr error
	entry   *Entry // nil: not signed in
	access  Token
	id      Token
	// accessAt and idAt are when access and id were installed: with their expiry,
	// their lifetime, which caps the proxy's margin (current).
	accessAt, idAt time.Time
	email          string
	subject        string
	state          State
	reason         string
	due            time.Time // next proactive refresh; zero: none scheduled
	failures       int       // consecutive failed refreshes
	retryAt        time.Time // no refresh before this after a failure
	lastErr        error
	// unsaved is a rotated refresh token the keychain refused to store;
	// it stands in for the keychain entry while that still holds the
	// spent token unsavedOver (LESSONS: oidc-agent #406).
	unsaved     *Entry
	unsavedOver string
}

func (s *session) status() ProfileStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := ProfileStatus{
		Profile:  s.p.Name,
		Issuer:   s.p.Issuer,
		ClientID: s.p.ClientID,
		State:    s.state,
		Reason:   s.reason,
		Inject:   s.p.Inject,
		Email:    s.email,
		Subject:  s.subject,
	}
	if s.entry != nil {
		if st.Email == "" {
			st.Email = s.entry.Email
		}
		if st.Subject == "" {
			st.Subject = s.entry.Subject
		}
	}
	if s.p.Inject == IDToken {
		st.Expiry = s.id.Expiry
	} else {
		st.Expiry = s.access.Expiry
	}
	for _, g := range s.p.Gateways {
		st.Gateways = append(st.Gateways, g.String())
	}
	for _, g := range s.p.PlainHTTP {
		st.PlainHTTP = append(st.PlainHTTP, g.String())
	}
	for g, k := range s.p.Overrides {
		if st.Overrides == nil {
			st.Overrides = map[string]Override{}
		}
		st.Overrides[g.String()] = k
	}
	return st
}

// current returns the in-memory token of kind if it stays valid for minTTL. With
// capped, minTTL is at most a quarter of the token's lifetime.
func (s *session) current(kind TokenKind, now time.Time, minTTL time.Duration, capped bool) (Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == StateSignInRequired || s.state == StateSignedOut {
		return Token{}, false
	}
	t, at := s.access, s.accessAt
	if kind == IDToken {
		t, at = s.id, s.idAt
	}
	if capped && !at.IsZero() {
		minTTL = min(minTTL, max(t.Expiry.Sub(at)/4, 0))
	}
	if t.Value == "" || !now.Add(minTTL).Before(t.Expiry) {
		return Token{}, false
	}
	return t, true
}

// missing explains why no token of kind is available after a refresh, and whether
// it is the issuer's answer (not the caller's minTTL) that falls short.
func (s *session) missing(kind TokenKind, minTTL time.Duration, capped bool) (issuers bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.access
	if kind == IDToken {
		t = s.id
	}
	switch {
	case t.Value == "" && kind == IDToken:
		return true, fmt.Errorf("profile %s: the issuer returned no ID token; add the \"openid\" scope, or set inject = \"access_token\" (the profile's, or the gateway's override)", s.p.Name)
	case t.Value == "":
		return true, fmt.Errorf("profile %s: the issuer returned no access token", s.p.Name)
	case kind == IDToken && s.idAt.Before(s.accessAt):
		// The refresh brought an access token only; the ID token is the old one.
		return true, fmt.Errorf("profile %s: the issuer's refresh returned no new ID token, and the one held expires %s; "+
			"run gatepass login --profile %s for a new one, or set inject = \"access_token\" (the profile's, or the gateway's override)",
			s.p.Name, t.Expiry.Format(time.RFC3339), s.p.Name)
	case capped && kind == AccessToken:
		// Even a quarter of its lifetime is not left. An access token's lifetime is
		// relative (expires_in, RFC 6749 §5.1), so no clock is to blame: the answer is.
		return true, fmt.Errorf("profile %s: the issuer's new access token came already expired or about to be (it lives until %s): "+
			"its token answer's expires_in is wrong; tell the issuer's operator, or set inject = \"id_token\" (the profile's, or the gateway's override)",
			s.p.Name, t.Expiry.Format(time.RFC3339))
	case capped:
		// An ID token's exp is absolute: one that came expired means a clock is off.
		return true, fmt.Errorf("profile %s: the issuer's new %s is already expired or about to be (it lives until %s): check this machine's clock",
			s.p.Name, kind, t.Expiry.Format(time.RFC3339))
	}
	return false, fmt.Errorf("profile %s: the issuer's %s lives until %s, shorter than the %s asked for; ask for a smaller --min-ttl",
		s.p.Name, kind, t.Expiry.Format(time.RFC3339), minTTL)
}

// refreshDue reports whether the agent should refresh now.
func (s *session) refreshDue(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entry == nil || s.state == StateSignInRequired || s.state == StateSignedOut {
		return false
	}
	if now.Before(s.retryAt) {
		return false
	}
	return s.due.IsZero() || !now.Before(s.due)
}

// failing returns the last refresh error while the backoff after it runs,
// so a broken issuer is not asked again by every proxied request.
func (s *session) failing(now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 && now.Before(s.retryAt) && s.lastErr != nil {
		return fmt.Errorf("%w (next retry in %s)", s.lastErr, s.retryAt.Sub(now).Round(time.Second))
	}
	return nil
}

func (s *session) setEntry(e *Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entry, s.loaded = e, true
}

func (s *session) setState(st State, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.reason = st, reason
}

func (s *session) fail(err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures++
	s.lastErr = err
	s.retryAt = now.Add(backoff(s.failures))
	// Still signed in: the refresh token is kept and tokens already held
	// stay usable until they expire; the reason says what went wrong.
	s.state, s.reason = StateSignedIn, err.Error()
}

func (s *session) requireSignIn(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access, s.id = Token{}, Token{}
	s.accessAt, s.idAt = time.Time{}, time.Time{}
	s.state, s.reason = StateSignInRequired, reason
	s.due, s.failures, s.retryAt, s.lastErr = time.Time{}, 0, time.Time{}, nil
}

func (s *session) signOut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entry, s.loaded = nil, true
	s.access, s.id = Token{}, Token{}
	s.accessAt, s.idAt = time.Time{}, time.Time{}
	s.email, s.subject = "", ""
	s.state, s.reason = StateSignedOut, ""
	s.due, s.failures, s.retryAt, s.lastErr = time.Time{}, 0, time.Time{}, nil
	s.unsaved, s.unsavedOver = nil, ""
}

// withUnsaved returns the entry whose refresh token is live: the rotated one
// kept in memory if the keychain still holds the token it replaced, else
// stored (which then supersedes it).
func (s *session) withUnsaved(stored *Entry) *Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unsaved != nil && stored.RefreshToken == s.unsavedOver {
		return s.unsaved
	}
	s.unsaved, s.unsavedOver = nil, ""
	return stored
}

func (s *session) setUnsaved(e *Entry, over string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unsaved, s.unsavedOver = e, over
}

// install stores freshly issued tokens and schedules the next refresh.
func (s *session) install(tok *oauth2.Token, id *verifiedID, now time.Time, jitter float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access = Token{Kind: AccessToken, Value: tok.AccessToken, Expiry: tok.Expiry}
	s.accessAt = now
	if tok.ExpiresIn > 0 {
		// x/oauth2 dates Expiry with time.Now; measure on this session's
		// clock like the ID token and the refresh schedule.
		s.access.Expiry = now.Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	if s.access.Expiry.IsZero() {
		s.access.Expiry = now.Add(defaultLifetime)
	}
	if id != nil {
		s.id = Token{Kind: IDToken, Value: id.raw, Expiry: id.expiry}
		s.idAt = now
		s.subject = id.claims.Subject
		if id.claims.Email != "" {
			s.email = id.claims.Email
		}
	}
	expiry := s.access.Expiry
	// Only an ID token this answer brought: an older one (the issuer may leave it
	// out of a refresh) may be expired already, and would bring the next refresh
	// forward to now, again and again.
	if id != nil && s.id.Expiry.Before(expiry) {
		expiry = s.id.Expiry
	}
	s.due = nextRefresh(now, expiry, jitter)
	s.state, s.reason = StateSignedIn, ""
	s.failures, s.retryAt, s.lastErr = 0, time.Time{}, nil
}
