package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gofrs/flock"
	"golang.org/x/oauth2"
)

// Deps are the OS edges a Broker works through; cmd wires the real ones,
// tests wire fakes.
type Deps struct {
	Keychain   Keychain
	Clock      Clock        // default SystemClock
	HTTPClient *http.Client // identity-provider traffic; default NewHTTPClient(cfg, 30s)
	// LockDir holds one lock file per profile so two gatepass processes
	// never spend the same refresh token; default <UserCacheDir>/gatepass/locks.
	LockDir string
	Log     *slog.Logger   // default discards
	Jitter  func() float64 // in [-1, 1]; default random
	Browser Browser        // default browser for Login; LoginOptions may override
}

// Broker owns the sessions of all profiles in one config. It is safe for
// concurrent use: the proxy calls Token from many goroutines while the UI
// calls Login and Logout.
type Broker struct {
	cfg   *Config
	deps  Deps
	store Store

	mu       sync.Mutex // guards sessions and subs
	sessions map[string]*session
	subs     map[int]chan Event
	nextSub  int

	proxyAddr  atomic.Pointer[func() string] // SetProxyAddr
	ca         atomic.Pointer[AgentCA]       // SetCA
	showWindow atomic.Pointer[func()]        // SetShowWindow

	grantTimeout time.Duration // bounds a refresh grant: refreshGrantTimeout, shorter in tests
	// peerOwner replaces the lookup of who holds a sign-in callback's client end
	// (tests); nil is peer.Owner.
	peerOwner func(net.Conn) (uint32, error)
}

// SetProxyAddr tells the control API where this agent's proxy listens (addr returns
// "" while it does not), so that `gatepass status` and `doctor` look there and not
// only at the config's listen.
func (b *Broker) SetProxyAddr(addr func() string) { b.proxyAddr.Store(&addr) }

// SetShowWindow tells the control API how to bring this agent's window forward,
// so that starting gatepass a second time shows the running one instead of
// failing. A headless agent (gatepass proxy) has none.
func (b *Broker) SetShowWindow(show func()) { b.showWindow.Store(&show) }

// ownProxyAddr is where this agent's proxy listens, "" when it does not or is unknown.
func (b *Broker) ownProxyAddr() string {
	if f := b.proxyAddr.Load(); f != nil {
		return (*f)()
	}
	return ""
}

// New builds a Broker for cfg. It touches neither the network nor the
// keychain until a method needs them.
func New(cfg *Config, deps Deps) (*Broker, error) {
	if deps.Keychain == nil {
		return nil, errors.New("broker: no keychain")
	}
	if deps.Clock == nil {
		deps.Clock = SystemClock{}
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Jitter == nil {
		deps.Jitter = func() float64 { return rand.Float64()*2 - 1 }
	}
	if deps.LockDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("find a directory for lock files: %w", err)
		}
		deps.LockDir = filepath.Join(dir, "gatepass", "locks")
	}
	b := &Broker{
		cfg:      cfg,
		deps:     deps,
		store:    Store{Keychain: deps.Keychain},
		sessions: map[string]*session{},
		subs:     map[int]chan Event{},

		grantTimeout: refreshGrantTimeout,
	}
	if b.deps.HTTPClient == nil {
		// Never through this agent's own proxy, wherever it listens (SetProxyAddr).
		b.deps.HTTPClient = newHTTPClient(cfg, 30*time.Second, b.ownProxyAddr)
	}
	for _, p := range cfg.Profiles {
		b.sessions[p.Name] = &session{p: p, state: StateSignedOut}
	}
	return b, nil
}

// Config returns the configuration the broker was built from.
func (b *Broker) Config() *Config { return b.cfg }

func (b *Broker) session(profile string) (*session, error) {
	p, err := b.cfg.Profile(profile)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[p.Name], nil
}

// Subscribe returns a channel of status changes. The channel is buffered;
// a subscriber that falls behind misses intermediate events but always
// gets a later one, so a UI that re-reads Statuses on each event stays
// correct. cancel must be called when done.
func (b *Broker) Subscribe() (<-chan Event, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.nextSub
	b.nextSub++
	ch := make(chan Event, 32)
	b.subs[id] = ch
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if c, ok := b.subs[id]; ok {
			delete(b.subs, id)
			close(c)
		}
	}
}

func (b *Broker) publish(st ProfileStatus) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range b.subs {
		select {
		case ch <- Event{Status: st}:
		default: // subscriber is behind; it will re-read state on the next event
		}
	}
}

// Statuses returns a snapshot of every profile, in config order. Profiles
// this process has not touched yet are looked up in the keychain.
func (b *Broker) Statuses() []ProfileStatus {
	out := make([]ProfileStatus, 0, len(b.cfg.Profiles))
	for _, p := range b.cfg.Profiles {
		st, _ := b.Status(p.Name)
		out = append(out, st)
	}
	return out
}

// Status returns one profile's snapshot. When this process holds no state
// for it yet, it reads the keychain entry (no network).
func (b *Broker) Status(profile string) (ProfileStatus, error) {
	s, err := b.session(profile)
	if err != nil {
		return ProfileStatus{}, err
	}
	if err := b.loadEntry(s); err != nil && !errors.Is(err, ErrNotFound) {
		st := s.status()
		if st.State == StateSignedOut {
			st.State = StateUnknown // not "signed out": the keychain did not say
		}
		st.Reason = err.Error()
		return st, err
	}
	return s.status(), nil
}

// loadEntry reads the keychain entry once per process (LESSONS: one
// keychain read at agent start, not one per request).
//
// One read at a time per profile: a caller that arrives while one is in
// flight waits for its result, so a keychain that hangs (a locked collection
// behind a prompt) costs one timeout, not one per caller.
func (b *Broker) loadEntry(s *session) error {
	s.mu.Lock()
	if s.loaded {
		s.mu.Unlock()
		return nil
	}
	if wait := s.loading; wait != nil {
		s.mu.Unlock()
		<-wait
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.loaded {
			return nil
		}
		return s.loadErr
	}
	done := make(chan struct{})
	s.loading = done
	s.mu.Unlock()
	return b.readEntry(s, done)
}

// readEntry does the keychain read that loadEntry (or Start) claimed by
// setting s.loading to done; it closes done when the read ends.
func (b *Broker) readEntry(s *session, done chan struct{}) error {
	e, err := b.store.Load(s.p.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.loading = nil; close(done) }()
	s.loadErr = nil
	switch {
	case err == nil:
		s.entry, s.loaded = e, true
		switch {
		case !e.Matches(s.p):
			// The keychain account is the profile's name (DESIGN §4), so another
			// config's profile of that name may have signed in last: say so now,
			// not only at the first refresh.
			s.state, s.reason = StateSignInRequired, otherSignInReason(e)
		case e.Refused != "":
			// The issuer refused this refresh token in an earlier run.
			s.state, s.reason = StateSignInRequired, e.Refused
		case s.state == StateSignedOut || s.state == StateUnknown:
			s.state = StateSignedIn
		}
	case errors.Is(err, ErrNotFound):
		s.entry, s.loaded = nil, true
		if s.state != StateSigningIn {
			s.state = StateSignedOut
		}
	default:
		s.loadErr = err
		return err
	}
	return nil
}

// Matches reports whether the entry is a sign-in of p's issuer and client.
func (e *Entry) Matches(p *Profile) bool {
	return e.Issuer == p.Issuer && e.ClientID == p.ClientID
}

// otherSignInReason says whose sign-in the keychain holds for a profile whose
// issuer or client ID differs: the config changed, or another config has a profile
// of the same name.
func otherSignInReason(e *Entry) string {
	return fmt.Sprintf("the stored sign-in belongs to another issuer or client ID (%s, client %s): "+
		"the config changed, or another config has a profile of this name", e.Issuer, e.ClientID)
}

// Start turns the broker into the agent: it loads every signed-in profile,
// fetches fresh tokens and keeps them fresh until ctx ends. The schedule is
// checked against the wall clock every few seconds rather than with long
// timers, so a laptop waking from sleep refreshes at once (LESSONS:
// aws-vault #222).
//
// The keychain is read in the background, one goroutine per profile, so a
// keychain that hangs does not hold up the caller (the window opens at
// once); each profile's state is published once read. A Status or Token
// call meanwhile waits for that same read.
//
// The channel Start returns is closed once ctx has ended and the agent's own
// work (keychain reads, refreshes it began) is over: whoever removes what the
// agent writes to (the lock directory, a test's temporary one) waits for it.
func (b *Broker) Start(ctx context.Context) <-chan struct{} {
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range b.cfg.Profiles {
		s, _ := b.session(p.Name)
		// Claim the read now, so that a Status, Token or Tick call made right
		// after Start returns waits for it rather than finding nothing read.
		load := func() error { return b.loadEntry(s) }
		s.mu.Lock()
		if !s.loaded && s.loading == nil {
			done := make(chan struct{})
			s.loading = done
			load = func() error { return b.readEntry(s, done) }
		}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := load(); err != nil {
				b.deps.Log.Warn("keychain", "profile", p.Name, "err", err)
				s.setState(StateUnknown, err.Error())
			}
			b.publish(s.status())
		}()
	}
	go func() {
		defer close(stopped)
		wg.Wait()
		b.Tick(ctx)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				b.Tick(ctx)
			}
		}
	}()
	return stopped
}

// Tick refreshes every profile whose refresh is due (or whose retry
// backoff has passed). The agent calls it periodically; tests call it
// after moving a fake clock.
func (b *Broker) Tick(ctx context.Context) {
	now := b.deps.Clock.Now()
	var wg sync.WaitGroup
	for _, p := range b.cfg.Profiles {
		s, _ := b.session(p.Name)
		s.mu.Lock()
		wait := s.loading
		s.mu.Unlock()
		if wait != nil {
			<-wait // the keychain read Start began decides what is due
		}
		if !s.refreshDue(now) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.refresh(ctx, s, false); err != nil {
				b.deps.Log.Warn("refresh failed", "profile", s.p.Name, "err", err)
			}
		}()
	}
	wg.Wait()
}

// Token returns a token of the given kind for profile that stays valid for
// at least minTTL, refreshing first when needed. Concurrent callers share
// one refresh (one in flight per profile).
func (b *Broker) Token(ctx context.Context, profile string, kind TokenKind, minTTL time.Duration) (Token, error) {
	return b.token(ctx, profile, kind, minTTL, false)
}

// FreshToken is Token with margin as a wish rather than a demand: a token that
// lives less than four margins needs only a quarter of its lifetime left. It is
// what callers that set no minimum of their own use (the proxy, `gatepass token`
// without --min-ttl, the app's Copy token), so an issuer whose tokens live a
// minute or less does not make every call refresh and fail.
func (b *Broker) FreshToken(ctx context.Context, profile string, kind TokenKind, margin time.Duration) (Token, error) {
	return b.token(ctx, profile, kind, margin, true)
}

// token is Token; with capped, minTTL is at most a quarter of the token's lifetime.
func (b *Broker) token(ctx context.Context, profile string, kind TokenKind, minTTL time.Duration, capped bool) (Token, error) {
	s, err := b.session(profile)
	if err != nil {
		return Token{}, err
	}
	if tok, ok := s.current(kind, b.deps.Clock.Now(), minTTL, capped); ok {
		return tok, nil // fast path: no lock, no keychain, no network
	}
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	// Another caller may have refreshed while we waited for the lock.
	if tok, ok := s.current(kind, b.deps.Clock.Now(), minTTL, capped); ok {
		return tok, nil
	}
	if err := s.failing(b.deps.Clock.Now()); err != nil {
		return Token{}, err
	}
	if _, err := b.refreshLocked(ctx, s); err != nil {
		return Token{}, err
	}
	tok, ok := s.current(kind, b.deps.Clock.Now(), minTTL, capped)
	if !ok {
		issuers, err := s.missing(kind, minTTL, capped)
		if issuers {
			// Refreshing again now would bring the same answer: back off, as
			// after a failed refresh, instead of spending one per request.
			s.fail(err, b.deps.Clock.Now())
		}
		return Token{}, err
	}
	return tok, nil
}

// TokenForHost returns the token the profile owning host:port injects
// (Profile.GatewayToken: the gateway's override, else the profile's `inject`), valid
// for at least DefaultMargin. It is what the proxy
// asks for: "the token for this host", so per-gateway audiences can be
// added without changing callers.
func (b *Broker) TokenForHost(ctx context.Context, host, port string) (Token, *Profile, error) {
	p, ok := b.cfg.Lookup(host, port)
	if !ok {
		return Token{}, nil, fmt.Errorf("%s:%s is not a configured gateway", host, port)
	}
	gw := p.GatewayToken(host, port)
	tok, err := b.token(ctx, p.Name, gw.Inject, DefaultMargin, true)
	if err == nil {
		tok.Header = gw.Header
	}
	return tok, p, err
}

// DefaultMargin is how long a token must still be valid for the proxy to send it,
// or `gatepass token` to print it when no --min-ttl is given (FreshToken): a
// minute, or a quarter of the token's lifetime if that is shorter. A fixed minute
// would make an issuer whose tokens live a minute or less refresh on every request
// and still fail it.
const DefaultMargin = time.Minute

// refresh takes the profile's refresh lock and refreshes.
func (b *Broker) refresh(ctx context.Context, s *session, force bool) (*oauth2.Token, error) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if !force && !s.refreshDue(b.deps.Clock.Now()) {
		return nil, nil
	}
	return b.refreshLocked(ctx, s)
}

// refreshLocked spends the refresh token. Callers hold s.refreshMu; the
// per-profile file lock keeps other gatepass processes out too, and the
// entry is re-read under it because another process may have rotated it.
func (b *Broker) refreshLocked(ctx context.Context, s *session) (*oauth2.Token, error) {
	unlock, err := b.lockFile(ctx, s.p.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()

	entry, err := b.store.Load(s.p.Name)
	if errors.Is(err, ErrNotFound) {
		s.signOut()
		b.publish(s.status())
		return nil, &SignInRequiredError{Profile: s.p.Name, Reason: "not signed in"}
	}
	if err != nil {
		// A locked or unreachable keychain: back off like a failed refresh, or
		// every request and tick would read (and prompt) again.
		b.noteFailure(s, err)
		return nil, err
	}
	if !entry.Matches(s.p) {
		reason := otherSignInReason(entry)
		s.requireSignIn(reason)
		b.publish(s.status())
		return nil, &SignInRequiredError{Profile: s.p.Name, Reason: reason}
	}
	if entry.Refused != "" {
		// Another process (or an earlier run) was refused this refresh token.
		s.setEntry(entry)
		s.requireSignIn(entry.Refused)
		b.publish(s.status())
		return nil, &SignInRequiredError{Profile: s.p.Name, Reason: entry.Refused}
	}
	// The issuer already refused this very refresh token: say so without
	// asking again, or every proxied request would spend a dead token
	// (requireSignIn cleared the backoff). A new sign-in, here or in
	// another process, stores a different token and ends this.
	s.mu.Lock()
	dead := s.state == StateSignInRequired && s.entry != nil && s.entry.RefreshToken == entry.RefreshToken
	reason := s.reason
	s.mu.Unlock()
	if dead {
		return nil, &SignInRequiredError{Profile: s.p.Name, Reason: reason}
	}
	stored := entry.RefreshToken // what the keychain holds
	if live := s.withUnsaved(entry); live != entry {
		// An earlier rotation could not be saved: spend the rotated token,
		// not the spent one, and try to save it again.
		entry = live
		if err := b.store.Save(s.p.Name, live); err == nil {
			s.setUnsaved(nil, "")
			stored = live.RefreshToken
		}
	}
	s.setEntry(entry)

	prov, err := b.provider(ctx, s)
	if err != nil {
		b.noteFailure(s, err)
		return nil, err
	}
	s.setState(StateRefreshing, "")
	b.publish(s.status())

	// Once sent, the grant runs to its end even if the caller stops waiting: with
	// rotation the issuer has spent the old refresh token as soon as it answers,
	// and an answer dropped half-read would lose the new one (sign-in required).
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.grantTimeout)
	defer cancel()
	octx := context.WithValue(gctx, oauth2.HTTPClient, b.deps.HTTPClient)
	tok, err := prov.oauth.TokenSource(octx, &oauth2.Token{RefreshToken: entry.RefreshToken}).Token()
	if err != nil {
		if code := retrieveErrorCode(err); code == "invalid_grant" || code == "invalid_rapt" {
			reason := signInRequiredReason(s.p, err)
			b.recordRefusal(s, entry, reason)
			s.requireSignIn(reason)
			b.publish(s.status())
			b.deps.Log.Info("sign-in required", "profile", s.p.Name)
			return nil, &SignInRequiredError{Profile: s.p.Name, Reason: reason}
		}
		err = &RefreshError{Profile: s.p.Name, Err: tokenEndpointError(s.p, err)}
		b.noteFailure(s, err)
		return nil, err
	}
	// A rotated refresh token is persisted before anything else happens,
	// so it is never lost nor the old one spent twice (LESSONS: oidc-agent #406).
	if tok.RefreshToken != "" && tok.RefreshToken != entry.RefreshToken {
		next := *entry
		next.RefreshToken = tok.RefreshToken
		next.SavedAt = b.deps.Clock.Now()
		if err := b.store.Save(s.p.Name, &next); err != nil {
			// The old token is already spent; keep the new one in memory so
			// this process can still use it, and say what happened.
			s.setEntry(&next)
			s.setUnsaved(&next, stored)
			err = fmt.Errorf("profile %s: save the rotated refresh token: %w", s.p.Name, err)
			b.noteFailure(s, err)
			return nil, err
		}
		s.setUnsaved(nil, "")
		s.setEntry(&next)
	}
	id, err := b.verify(gctx, prov, s, tok, "") // (its keys too: the answer is already spent)
	if err != nil {
		b.noteFailure(s, err)
		return nil, err
	}
	s.install(tok, id, b.deps.Clock.Now(), b.deps.Jitter())
	b.publish(s.status())
	b.deps.Log.Debug("refreshed", "profile", s.p.Name, "expiry", s.status().Expiry.Format(time.RFC3339))
	return tok, nil
}

// refreshGrantTimeout bounds a refresh grant, which the caller's context does not.
const refreshGrantTimeout = 30 * time.Second

func (b *Broker) noteFailure(s *session, err error) {
	s.fail(err, b.deps.Clock.Now())
	b.publish(s.status())
}

// provider returns the profile's discovered issuer, discovering once per
// process.
func (b *Broker) provider(ctx context.Context, s *session) (*provider, error) {
	s.mu.Lock()
	prov := s.prov
	s.mu.Unlock()
	if prov != nil {
		return prov, nil
	}
	prov, err := discover(ctx, s.p, b.deps.HTTPClient, b.deps.Clock)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.prov = prov
	s.mu.Unlock()
	return prov, nil
}

// recordRefusal marks the keychain entry whose refresh token the issuer refused
// (Entry.Refused), so `gatepass status` and the next process know it without
// spending the dead token again. Callers hold the profile's file lock, so a
// sign-in cannot land between the refusal and the mark. When the mark cannot be
// written, this process still knows, and the next one is refused once more.
func (b *Broker) recordRefusal(s *session, spent *Entry, reason string) {
	next := *spent
	next.Refused = printable(reason, 600)
	if err := b.store.Save(s.p.Name, &next); err != nil {
		b.deps.Log.Warn("could not record in the keychain that the issuer refused the sign-in", "profile", s.p.Name, "err", err)
		return
	}
	s.setEntry(&next)
}

// lockFile takes the profile's cross-process lock, waiting up to the
// context's deadline (or 30s).
func (b *Broker) lockFile(ctx context.Context, profile string) (func(), error) {
	if err := os.MkdirAll(b.deps.LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	fl := flock.New(filepath.Join(b.deps.LockDir, profile+".lock"))
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ok, err := fl.TryLockContext(lctx, 50*time.Millisecond)
	if err != nil || !ok {
		return nil, fmt.Errorf("profile %s is busy in another gatepass process (lock %s): %v; retry, or stop the other process", profile, fl.Path(), err)
	}
	return func() { _ = fl.Unlock() }, nil
}

// RefreshError is a failed refresh that is not invalid_grant: the issuer
// was unreachable or answered badly. The refresh token is kept; the agent
// retries with backoff.
type RefreshError struct {
	Profile string
	Err     error
}

func (e *RefreshError) Error() string {
	return fmt.Sprintf("profile %s: refresh tokens: %v", e.Profile, e.Err)
}

func (e *RefreshError) Unwrap() error { return e.Err }

// signInRequiredReason says why the issuer refused the refresh token (invalid_grant
// or invalid_rapt), with the issuer's own description and, for Google, the two
// causes a user can do something about.
func signInRequiredReason(p *Profile, err error) string {
	var re *oauth2.RetrieveError
	errors.As(err, &re)
	reason := "the issuer no longer accepts the refresh token (expired or revoked)"
	if re != nil && re.ErrorCode == "invalid_rapt" {
		reason = "the issuer asks you to sign in again (invalid_rapt: a reauthentication policy of your organisation)"
	}
	if re != nil && re.ErrorDescription != "" {
		reason += ": " + printable(re.ErrorDescription, 200)
	}
	if p.IsGoogle() && (re == nil || re.ErrorCode == "invalid_grant") {
		reason += "; if the OAuth consent screen of this client is in Testing, Google ends its refresh tokens after 7 days: set it to In production to stay signed in"
	}
	return reason
}

// printable is s without control characters, cut to at most n bytes.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n-- // not inside a character
		}
		s = s[:n] + "…"
	}
	return s
}

func retrieveErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// tokenEndpointError turns x/oauth2's errors into a message that says what
// happened without echoing the response body (which could hold anything,
// including tokens).
func tokenEndpointError(p *Profile, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		msg := fmt.Sprintf("token endpoint answered HTTP %d", status)
		if re.ErrorCode != "" {
			msg += " " + re.ErrorCode
			if re.ErrorDescription != "" {
				msg += ": " + re.ErrorDescription
			}
		} else {
			msg += " without an OAuth error code (not a JSON OAuth response)"
		}
		hint := "retry later; if it persists, check the issuer's status"
		switch re.ErrorCode {
		case "invalid_client", "unauthorized_client":
			hint = "check client_id and client_secret of profile " + p.Name
		case "invalid_request":
			hint = "check client_secret of profile " + p.Name + " (Google Desktop clients require it)"
		}
		return &IssuerError{Issuer: p.Issuer, Op: "token request", Err: errors.New(msg), Hint: hint}
	}
	if hint := IssuerHint(err); hint != "" {
		return &IssuerError{Issuer: p.Issuer, Op: "token request", Err: err, Hint: hint}
	}
	return &IssuerError{Issuer: p.Issuer, Op: "token request", Err: sanitize(err), Hint: "the issuer's answer was not a usable token response"}
}

// sanitize keeps an error's category but drops text that may quote a
// response body.
func sanitize(err error) error {
	msg := []rune(err.Error())
	if len(msg) > 200 {
		msg = append(msg[:200], '…')
	}
	return errors.New(string(msg))
}
