package broker

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"net/http"
	"sync"

	"github.com/gatepass-dev/gatepass/assets"
)

// AuthorizationError is an error the issuer sent back on the redirect
// (RFC 6749 §4.1.2.1), e.g. access_denied when the user pressed Cancel.
type AuthorizationError struct {
	Code        string
	Description string
}

func (e *AuthorizationError) Error() string {
	if e.Code == "access_denied" {
		return "sign-in was cancelled or denied in the browser; run `gatepass login` again to retry"
	}
	msg := "the issuer refused the sign-in: " + e.Code
	if e.Description != "" {
		msg += " (" + e.Description + ")"
	}
	return msg + "; check client_id, scopes and the OAuth client's type (Desktop app) in the config"
}

// callbackResult is what the one good callback hands to the waiting login.
type callbackResult struct {
	code string
	err  error
}

// callbackHandler serves the loopback redirect (RFC 8252 §7.3). It accepts
// exactly one callback whose state matches (compared in constant time,
// RFC 6749 §10.12); other requests get an error page and change nothing, so
// a stray request from a web page can neither finish nor spoil the sign-in.
//
// finish runs the code exchange for the one accepted callback and returns
// the page data to show; it is called at most once.
//
// The same listener serves the start address (startPath): the browser is opened
// there, not at the authorization URL, which would put the state, nonce and PKCE
// challenge on the opener's command line for every local user to read. It answers
// with a redirect to the authorization URL.
type callbackHandler struct {
	state  string
	finish func(code string) (email string, err error)
	// authURL is where the start address redirects; "" serves no start address.
	authURL string
	// peers refuses other users' processes before anything else is looked at
	// (peer.go); nil lets every client in.
	peers *callbackPeers

	mu   sync.Mutex // guards done
	done bool
	// result receives exactly one value, after finish has run.
	result chan callbackResult
}

func newCallbackHandler(state string, finish func(code string) (string, error)) *callbackHandler {
	return &callbackHandler{state: state, finish: finish, result: make(chan callbackResult, 1)}
}

func (h *callbackHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if h.peers.refuse(w, r) {
		return
	}
	if r.URL.Path == startPath && h.authURL != "" {
		h.start(w, r)
		return
	}
	if r.URL.Path != "/callback" {
		errorPage(w, http.StatusNotFound, "Not found", "This address only receives the sign-in redirect.", "")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		errorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "The sign-in redirect is a GET request.", "")
		return
	}
	q := r.URL.Query()
	got := q.Get("state")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(h.state)) != 1 {
		errorPage(w, http.StatusBadRequest, "This sign-in response is not the one gatepass is waiting for",
			"The state parameter is missing or does not match, so the response was ignored.",
			"Start again with `gatepass login`, and finish in the browser tab it opens.")
		return
	}
	h.mu.Lock()
	if h.done {
		h.mu.Unlock()
		errorPage(w, http.StatusGone, "Already signed in", "This sign-in has already completed.", "You can close this tab.")
		return
	}
	h.done = true
	h.mu.Unlock()

	if code := q.Get("error"); code != "" {
		err := &AuthorizationError{Code: code, Description: q.Get("error_description")}
		errorPage(w, http.StatusForbidden, "Sign-in did not complete", err.Error(), "")
		h.result <- callbackResult{err: err}
		return
	}
	code := q.Get("code")
	if code == "" {
		err := fmt.Errorf("the issuer redirected back without an authorization code; run `gatepass login` again")
		errorPage(w, http.StatusBadRequest, "Sign-in did not complete", err.Error(), "")
		h.result <- callbackResult{err: err}
		return
	}
	email, err := h.finish(code)
	if err != nil {
		errorPage(w, http.StatusBadGateway, "Sign-in did not complete", err.Error(), "See the terminal or the gatepass window for details.")
		h.result <- callbackResult{err: err}
		return
	}
	page(w, http.StatusOK, "success.html", map[string]string{"Email": email})
	h.result <- callbackResult{code: code}
}

// startPath is the start address's path on the loopback listener.
const startPath = "/"

// start sends the browser on to the authorization URL. The redirect carries the
// state, so it is neither cached (Cache-Control: no-store, set by ServeHTTP) nor
// passed on as a Referer.
func (h *callbackHandler) start(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		errorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "Open this address in the browser to sign in.", "")
		return
	}
	w.Header().Set("Location", h.authURL)
	w.WriteHeader(http.StatusFound)
}

func errorPage(w http.ResponseWriter, status int, title, detail, hint string) {
	page(w, status, "error.html", map[string]string{"Title": title, "Detail": detail, "Hint": hint})
}

func page(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := assets.CallbackTemplates.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "gatepass: "+fmt.Sprint(data), status)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
