package proxy

import (
	"io"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// forward is the hot path for absolute-URI requests that are not upgrades: one
// RoundTrip on the shared transport and a streamed copy back, without
// httputil.ReverseProxy's per-request clone and client trace. Upgrades (WebSocket) go
// through the ReverseProxy, which knows how to splice the connections.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, st *reqState) {
	// The server owns r and does not reuse it: strip and inject in place.
	te := httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers")
	removeHopByHop(r.Header)
	if te {
		r.Header.Set("Te", "trailers")
	}
	if st.injected {
		r.Header.Set(st.tok.Header, "Bearer "+st.tok.Value)
	}
	u := *r.URL
	u.Host = st.d.Addr() // connect to exactly what the policy decided on
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
		if r.Context().Err() != nil {
			st.status, st.err = 499, "client went away"
			return
		}
		d := upstreamError(st.d, err)
		st.status, st.err = d.Status, d.Reason
		writeRefusal(w, d)
		return
	}
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
	_, err = io.CopyBuffer(dst, resp.Body, buf)
	s.bufs.Put(buf)
	if err != nil {
		if r.Context().Err() != nil {
			st.err = "client went away mid-body"
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
