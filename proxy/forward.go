package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// serveDecided carries out a decision for a request read by one of the proxy's HTTP
// servers (the listen port, or the server inside an intercepted tunnel): answer the
// status page, refuse, or fetch the token and forward. scheme is the upstream's.
func (s *Server) serveDecided(w http.ResponseWriter, r *http.Request, d Decision, scheme string, start time.Time) {
	e := RequestLog{Time: start, Method: r.Method, Host: logHost(d, r), Path: r.URL.Path, Profile: d.Profile}
	switch d.Action {
	case StatusPage:
		// Not a proxied request (a browser or `gatepass status` looking at
		// the port): logged at debug level, not listed in the app's log.
		status := s.statusPage(w, r)
		s.log.Debug("status page", "host", r.Host, "path", r.URL.Path, "status", status)
		return
	case Forward, Inject:
	default:
		writeRefusal(w, d)
		e.Status, e.Err, e.Duration = d.Status, d.Code, time.Since(start)
		s.logRequest(e)
		return
	}
	st := &reqState{d: d}
	if d.Action == Inject {
		tok, ref := s.token(r.Context(), d)
		if ref != nil {
			writeRefusal(w, *ref)
			e.Status, e.Err, e.Duration = ref.Status, ref.Code, time.Since(start)
			s.logRequest(e)
			return
		}
		st.tok, st.injected = tok, true
	}
	defer func() {
		p := recover()
		e.Status, e.Injected, e.Err, e.Duration = st.status, st.injected, st.err, time.Since(start)
		if p != nil && e.Err == "" {
			e.Err = "aborted mid-body: client or upstream went away"
		}
		s.logRequest(e)
		if p != nil {
			panic(p)
		}
	}()
	if httpguts.HeaderValuesContainsToken(r.Header["Connection"], "Upgrade") {
		// Upgrades (WebSocket) go through httputil.ReverseProxy, which splices the
		// two connections after the 101.
		if r.URL.Scheme == "" {
			r.URL.Scheme = scheme
		}
		s.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
		return
	}
	s.forward(w, r, st, scheme)
}

// forward is the hot path for requests that are not upgrades. The server owns r and
// does not reuse it: strip and inject in place. Plain HTTP/1.1 exchanges go through
// h1Pool in this goroutine; the rest (HTTP/2 upstreams, 100-continue, a corporate
// upstream proxy) through http.Transport.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, st *reqState, scheme string) {
	te := httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers")
	removeHopByHop(r.Header)
	if te {
		r.Header.Set("Te", "trailers")
	}
	if st.injected {
		r.Header.Set(st.tok.Header, "Bearer "+st.tok.Value)
	}
	addr := st.d.Addr() // connect to exactly what the policy decided on
	if s.useH1(r, scheme, st.d.Host, addr) {
		ok := s.forwardH1(w, r, st, scheme, addr)
		if ok {
			return
		}
		// The upstream negotiated HTTP/2 on the first dial: http.Transport from now on.
	}
	s.forwardTransport(w, r, st, scheme, addr)
}

// useH1 says whether h1Pool may carry the request.
func (s *Server) useH1(r *http.Request, scheme, host, addr string) bool {
	if r.Header["Expect"] != nil {
		return false // 100-continue needs the transport's wait-for-continue logic
	}
	return s.h1Carries(scheme, host, addr)
}

// forwardH1 sends r over h1Pool and streams the answer back. It returns false, having
// written nothing, when the upstream turned out to speak HTTP/2.
func (s *Server) forwardH1(w http.ResponseWriter, r *http.Request, st *reqState, scheme, addr string) bool {
	req := &h1Request{
		Method:        r.Method,
		Scheme:        scheme,
		Addr:          addr,
		RequestURI:    r.URL.RequestURI(),
		Host:          r.Host,
		Header:        r.Header,
		ContentLength: r.ContentLength,
		Trailer:       r.Trailer,
		On1xx:         pass1xx(w),
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		req.Body = r.Body
	} else {
		req.ContentLength = 0
	}
	if req.Host == "" {
		req.Host = addr
	}
	x, err := s.h1.roundTrip(r.Context(), req)
	if errors.Is(err, errUseTransport) {
		return false
	}
	if err != nil {
		s.upstreamFailed(w, r, st, err)
		return true
	}
	s.copyResponse(w, r, st, x.Response)
	return true
}

// pass1xx passes an upstream's interim responses (103 Early Hints and the like) on to
// the client, all but 100 Continue: requests that asked for it go through the
// transport.
func pass1xx(w http.ResponseWriter) func(code int, h http.Header) {
	return func(code int, h http.Header) {
		if code == http.StatusContinue {
			return // the client did not ask for it
		}
		removeHopByHop(h)
		wh := w.Header()
		for k, v := range h {
			wh[k] = v
		}
		w.WriteHeader(code)
		clear(wh)
	}
}

// forwardTransport is the general path: one RoundTrip on the shared http.Transport.
func (s *Server) forwardTransport(w http.ResponseWriter, r *http.Request, st *reqState, scheme, addr string) {
	u := *r.URL
	u.Scheme, u.Host = scheme, addr
	out := &http.Request{
		Method:        r.Method,
		URL:           &u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        r.Header,
		Body:          r.Body,
		ContentLength: r.ContentLength,
		Host:          r.Host,
		Trailer:       r.Trailer,
	}
	if r.ContentLength == 0 {
		out.Body = nil // lets the transport retry idempotent requests on a stale connection
	}
	resp, err := s.transport.RoundTrip(out.WithContext(r.Context()))
	if err != nil {
		s.upstreamFailed(w, r, st, err)
		return
	}
	s.copyResponse(w, r, st, resp)
}

// upstreamFailed answers a request whose upstream exchange failed before a response:
// 502 (504 on a timeout) with the reason, or nothing if the client is gone.
func (s *Server) upstreamFailed(w http.ResponseWriter, r *http.Request, st *reqState, err error) {
	if r.Context().Err() != nil {
		st.status, st.err = 499, errClientGone
		// Abort: a handler that returns having written nothing gets an empty 200 from
		// net/http, which a client that only half-closed would read as the answer.
		panic(http.ErrAbortHandler)
	}
	d := upstreamError(st.d, err)
	st.status, st.err = d.Status, d.Reason
	writeRefusal(w, d)
}

// copyResponse passes the upstream's status, headers, body and trailers back,
// streaming; it closes resp.Body.
func (s *Server) copyResponse(w http.ResponseWriter, r *http.Request, st *reqState, resp *http.Response) {
	defer resp.Body.Close()
	st.status = resp.StatusCode
	removeHopByHop(resp.Header)
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h.Set("Trailer", strings.Join(names, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	var dst io.Writer = w
	if resp.ContentLength == -1 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		dst = flushWriter{w: w, rc: http.NewResponseController(w)} // streaming: no latency added
	}
	buf := s.bufs.Get()
	_, err := io.CopyBuffer(dst, resp.Body, buf)
	s.bufs.Put(buf)
	if err != nil {
		if r.Context().Err() != nil || clientWriteFailed(err) {
			st.err = errClientGone + " mid-body"
		} else {
			st.err = "upstream body: " + err.Error()
		}
		// The status line is out: abort the connection so the client cannot take a
		// truncated body for a complete one.
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		for _, v := range vv {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
}

type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// clientWriteFailed reports whether a copy from the upstream to the client failed on
// the write, that is on the client's side: io.Copy's error does not say which side it
// was ("readfrom tcp …: write tcp …: broken pipe" is the client's).
func clientWriteFailed(err error) bool {
	for err != nil {
		var oe *net.OpError
		if !errors.As(err, &oe) {
			return false
		}
		if oe.Op == "write" {
			return true
		}
		err = oe.Err
	}
	return false
}
