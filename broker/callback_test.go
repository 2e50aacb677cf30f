package broker

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	cbState = "good-state-0123456789abcdefghijklmnopqrstuvwxyz"
	cbCode  = "4/0SECRET-code-value-xyz"
	cbEmail = "dev@example.test"
)

// cbFinish is a hand-written finish func that counts calls and records codes.
type cbFinish struct {
	mu    sync.Mutex
	calls int
	codes []string
	err   error // returned by every call
}

func (f *cbFinish) finish(code string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.codes = append(f.codes, code)
	if f.err != nil {
		return "", f.err
	}
	return cbEmail, nil
}

func (f *cbFinish) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// cbRequest is one request to the handler.
type cbRequest struct {
	method string
	path   string
	query  url.Values
}

// serve runs the request; a handler that blocks (say, on a second send to
// its result channel) fails the test instead of hanging it.
func (r cbRequest) serve(t testing.TB, h http.Handler) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:1/callback", nil)
	if r.method != "" {
		req.Method = r.method
	}
	if r.path != "" {
		req.URL.Path = r.path
	}
	req.URL.RawQuery = r.query.Encode()
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(rec, req)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		// Errorf, not Fatalf: serve also runs on other goroutines.
		t.Errorf("the handler blocked on %s %s?%s", req.Method, req.URL.Path, req.URL.RawQuery)
		return &httptest.ResponseRecorder{Body: new(bytes.Buffer), HeaderMap: http.Header{}}
	}
	return rec
}

func good(extra ...string) url.Values {
	v := url.Values{"state": {cbState}, "code": {cbCode}, "scope": {"openid email"}}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			v.Del(extra[i])
		} else {
			v.Set(extra[i], extra[i+1])
		}
	}
	return v
}

// resultOf returns the delivered result, failing if more than one was sent.
func resultOf(t *testing.T, h *callbackHandler) (callbackResult, bool) {
	t.Helper()
	select {
	case r := <-h.result:
		select {
		case r2 := <-h.result:
			t.Fatalf("a second result was delivered: %+v", r2)
		default:
		}
		return r, true
	default:
		return callbackResult{}, false
	}
}

func TestCallbackHandler(t *testing.T) {
	type step struct {
		req        cbRequest
		wantStatus int
		wantInPage string
	}
	tests := map[string]struct {
		finishErr  error
		steps      []step
		wantCalls  int    // finish calls
		wantResult string // "" none, "code", "authz:<code>", "error"
	}{
		"success": {
			steps:      []step{{cbRequest{query: good()}, http.StatusOK, cbEmail}},
			wantCalls:  1,
			wantResult: "code",
		},
		"wrong state is ignored, then the right one succeeds": {
			steps: []step{
				{cbRequest{query: good("state", "attacker-state")}, http.StatusBadRequest, "does not match"},
				{cbRequest{query: good("state", cbState+"x")}, http.StatusBadRequest, "does not match"},
				{cbRequest{query: good("state", cbState[:len(cbState)-1])}, http.StatusBadRequest, "does not match"},
				{cbRequest{query: good()}, http.StatusOK, cbEmail},
			},
			wantCalls:  1,
			wantResult: "code",
		},
		"missing state": {
			steps:     []step{{cbRequest{query: good("state", "")}, http.StatusBadRequest, "missing or does not match"}},
			wantCalls: 0,
		},
		"error with wrong state changes nothing": {
			steps: []step{
				{cbRequest{query: url.Values{"state": {"nope"}, "error": {"access_denied"}}}, http.StatusBadRequest, "does not match"},
				{cbRequest{query: good()}, http.StatusOK, cbEmail},
			},
			wantCalls:  1,
			wantResult: "code",
		},
		"missing code": {
			steps: []step{
				{cbRequest{query: good("code", "")}, http.StatusBadRequest, "without an authorization code"},
				{cbRequest{query: good()}, http.StatusGone, "already"},
			},
			wantCalls:  0,
			wantResult: "error",
		},
		"access_denied": {
			steps: []step{{cbRequest{query: url.Values{"state": {cbState}, "error": {"access_denied"},
				"error_description": {"The user cancelled the sign-in."}}}, http.StatusForbidden, "cancelled or denied"}},
			wantCalls:  0,
			wantResult: "authz:access_denied",
		},
		"another error code": {
			steps: []step{{cbRequest{query: url.Values{"state": {cbState}, "error": {"invalid_scope"},
				"error_description": {"Scope x was not granted."}}}, http.StatusForbidden, "invalid_scope"}},
			wantCalls:  0,
			wantResult: "authz:invalid_scope",
		},
		"error wins over a code": {
			steps:      []step{{cbRequest{query: good("error", "server_error")}, http.StatusForbidden, "server_error"}},
			wantCalls:  0,
			wantResult: "authz:server_error",
		},
		"second callback after success": {
			steps: []step{
				{cbRequest{query: good()}, http.StatusOK, cbEmail},
				{cbRequest{query: good()}, http.StatusGone, "already"},
				{cbRequest{query: good("code", "4/0another-code")}, http.StatusGone, "already"},
			},
			wantCalls:  1,
			wantResult: "code",
		},
		"finish fails": {
			finishErr: errors.New("token endpoint answered HTTP 500"),
			steps: []step{
				{cbRequest{query: good()}, http.StatusBadGateway, "HTTP 500"},
				{cbRequest{query: good()}, http.StatusGone, "already"},
			},
			wantCalls:  1,
			wantResult: "error",
		},
		"POST is refused": {
			steps: []step{
				{cbRequest{method: http.MethodPost, query: good()}, http.StatusMethodNotAllowed, "GET"},
				{cbRequest{method: http.MethodHead, query: good()}, http.StatusMethodNotAllowed, ""},
				{cbRequest{query: good()}, http.StatusOK, cbEmail},
			},
			wantCalls:  1,
			wantResult: "code",
		},
		"wrong path": {
			steps: []step{
				{cbRequest{path: "/", query: good()}, http.StatusNotFound, "Not found"},
				{cbRequest{path: "/callback/", query: good()}, http.StatusNotFound, "Not found"},
				{cbRequest{path: "/favicon.ico"}, http.StatusNotFound, "Not found"},
			},
			wantCalls: 0,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := &cbFinish{err: tc.finishErr}
			h := newCallbackHandler(cbState, f.finish)
			for i, st := range tc.steps {
				rec := st.req.serve(t, h)
				body := rec.Body.String()
				if rec.Code != st.wantStatus {
					t.Errorf("step %d: status %d, want %d; page:\n%s", i, rec.Code, st.wantStatus, body)
				}
				if st.wantInPage != "" && !strings.Contains(body, st.wantInPage) {
					t.Errorf("step %d: page lacks %q:\n%s", i, st.wantInPage, body)
				}
				for _, secret := range []string{cbCode, cbState, "4/0another-code"} {
					if strings.Contains(body, secret) || strings.Contains(body, url.QueryEscape(secret)) {
						t.Errorf("step %d: page reflects %q", i, secret)
					}
				}
				if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
					t.Errorf("step %d: Cache-Control %q, want no-store", i, cc)
				}
				if rp := rec.Header().Get("Referrer-Policy"); rp != "no-referrer" {
					t.Errorf("step %d: Referrer-Policy %q, want no-referrer", i, rp)
				}
				if rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != http.MethodGet {
					t.Errorf("step %d: 405 without Allow: GET", i)
				}
			}
			if got := f.count(); got != tc.wantCalls {
				t.Errorf("finish called %d times, want %d", got, tc.wantCalls)
			}
			if tc.wantCalls == 1 && (len(f.codes) != 1 || f.codes[0] != cbCode) {
				t.Errorf("finish got codes %q, want [%q]", f.codes, cbCode)
			}
			r, ok := resultOf(t, h)
			switch {
			case tc.wantResult == "":
				if ok {
					t.Errorf("a result was delivered: %+v", r)
				}
			case !ok:
				t.Errorf("no result delivered, want %s", tc.wantResult)
			case tc.wantResult == "code":
				if r.err != nil || r.code != cbCode {
					t.Errorf("result %+v, want code %q and no error", r, cbCode)
				}
			case tc.wantResult == "error":
				if r.err == nil {
					t.Errorf("result %+v, want an error", r)
				}
				if tc.finishErr != nil && !errors.Is(r.err, tc.finishErr) {
					t.Errorf("result error %v, want the finish error", r.err)
				}
			case strings.HasPrefix(tc.wantResult, "authz:"):
				var ae *AuthorizationError
				if !errors.As(r.err, &ae) {
					t.Fatalf("result error %v (%T), want *AuthorizationError", r.err, r.err)
				}
				if want := strings.TrimPrefix(tc.wantResult, "authz:"); ae.Code != want {
					t.Errorf("AuthorizationError.Code %q, want %q", ae.Code, want)
				}
				if !strings.Contains(r.err.Error(), "gatepass login") && !strings.Contains(r.err.Error(), "check client_id") {
					t.Errorf("error %q does not say what to do next", r.err)
				}
			}
		})
	}
}

// TestCallbackConcurrent fires many good callbacks at once: finish runs once,
// one page says signed in, the rest say already done, one result.
func TestCallbackConcurrent(t *testing.T) {
	f := &cbFinish{}
	h := newCallbackHandler(cbState, f.finish)
	const n = 40
	var ok, gone atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			switch rec := (cbRequest{query: good()}).serve(t, h); rec.Code {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusGone:
				gone.Add(1)
			}
		})
	}
	wg.Wait()
	if f.count() != 1 || ok.Load() != 1 || gone.Load() != n-1 {
		t.Fatalf("finish calls %d, 200s %d, 410s %d; want 1, 1, %d", f.count(), ok.Load(), gone.Load(), n-1)
	}
	if r, delivered := resultOf(t, h); !delivered || r.code != cbCode {
		t.Fatalf("result %+v (delivered %v), want code", r, delivered)
	}
}

// TestAuthorizationErrorMessages checks the messages say what to do.
func TestAuthorizationErrorMessages(t *testing.T) {
	tests := map[string]struct {
		err  AuthorizationError
		want []string
	}{
		"denied":           {AuthorizationError{Code: "access_denied"}, []string{"cancelled", "gatepass login"}},
		"other":            {AuthorizationError{Code: "unauthorized_client", Description: "Desktop only"}, []string{"unauthorized_client", "Desktop only", "client_id"}},
		"other, no detail": {AuthorizationError{Code: "invalid_request"}, []string{"invalid_request", "client_id"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			msg := tc.err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
		})
	}
}

func FuzzCallback(f *testing.F) {
	f.Add("GET", "/callback", "state="+cbState+"&code=abc")
	f.Add("GET", "/callback", "state="+cbState+"&error=access_denied")
	f.Add("GET", "/callback", "state="+cbState)
	f.Add("GET", "/callback", "state=x&code=abc")
	f.Add("GET", "/callback", "state="+cbState+"&state=other&code=abc")
	f.Add("GET", "/callback", "state=&code=abc")
	f.Add("POST", "/callback", "state="+cbState+"&code=abc")
	f.Add("GET", "/", "state="+cbState+"&code=abc")
	f.Add("GET", "/callback", "%zz;;&&state")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, method, path, rawQuery string) {
		fin := &cbFinish{}
		h := newCallbackHandler(cbState, fin.finish)
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:1/callback", nil)
		req.Method, req.URL.Path, req.URL.RawQuery = method, path, rawQuery
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req) // must not panic

		parsed, _ := url.ParseQuery(rawQuery)
		accepted := (method == http.MethodGet || method == "") && path == "/callback" &&
			parsed.Get("state") == cbState
		if fin.count() > 0 && !accepted {
			t.Fatalf("finish called for %s %q ?%q", method, path, rawQuery)
		}
		if fin.count() > 1 {
			t.Fatalf("finish called %d times", fin.count())
		}
		if !accepted {
			if len(h.result) != 0 {
				t.Fatalf("a rejected request delivered a result: %s %q ?%q", method, path, rawQuery)
			}
			// A stray request must not spoil the sign-in.
			rec := cbRequest{query: good()}.serve(t, h)
			if rec.Code != http.StatusOK || fin.count() != 1 {
				t.Fatalf("after stray %s %q ?%q, the good callback got %d with %d finish calls",
					method, path, rawQuery, rec.Code, fin.count())
			}
		}
		if len(h.result) > 1 {
			t.Fatalf("%d results delivered", len(h.result))
		}
		if rec.Code == http.StatusOK && fin.count() != 1 {
			t.Fatalf("200 without finish")
		}
	})
}
