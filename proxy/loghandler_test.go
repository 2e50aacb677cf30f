package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"
)

// TestLogHandlerMatchesTextHandler: every request line, fast-formatted or not, is
// byte for byte what slog's TextHandler writes, and other records go to it.
func TestLogHandlerMatchesTextHandler(t *testing.T) {
	at := time.Date(2026, 12, 2, 13, 28, 5, 323_999_999, time.UTC)
	entries := map[string]RequestLog{
		"injected":         {Method: "GET", Host: "127.0.0.1:18080", Path: "/", Status: 200, Injected: true, Profile: "work", Duration: 2384496 * time.Nanosecond},
		"microseconds":     {Method: "POST", Host: "api.team.example:443", Path: "/v1/things", Status: 201, Duration: 850 * time.Microsecond},
		"path with space":  {Method: "GET", Host: "a:80", Path: "/a b", Status: 200, Duration: time.Second},
		"path with quote":  {Method: "GET", Host: "a:80", Path: `/a"b=c`, Status: 200},
		"empty path":       {Method: "CONNECT", Host: "a:443", Status: 502, Err: "upstream a:443: connection refused"},
		"non-ASCII path":   {Method: "GET", Host: "a:80", Path: "/ä", Status: 404},
		"backslash":        {Method: "GET", Host: "a:80", Path: `/a\b`, Status: 200},
		"negative length?": {Method: "GET", Host: "a:80", Path: "/", Status: 499, Err: "client went away", Duration: -time.Millisecond},
	}
	for name, e := range entries {
		var fast, ref bytes.Buffer
		fh := NewLogHandler(&fast, nil)
		took := fh.(*logHandler).logRequest(at, e)
		if want := name == "injected" || name == "microseconds" || name == "backslash"; took != want {
			t.Errorf("%s: formatted by the fast path: %v, want %v", name, took, want)
		}
		if !took {
			r := slog.NewRecord(at, slog.LevelInfo, requestMsg, 0)
			r.AddAttrs(e.appendAttrs(nil)...)
			fh.Handle(context.Background(), r)
		}
		r := slog.NewRecord(at, slog.LevelInfo, requestMsg, 0)
		r.AddAttrs(e.appendAttrs(nil)...)
		th := slog.NewTextHandler(&ref, nil)
		th.Handle(context.Background(), r)
		for _, h := range []slog.Handler{fh, th} {
			h.Handle(context.Background(), slog.NewRecord(at, slog.LevelWarn, "something else", 0))
			h.WithAttrs([]slog.Attr{slog.String("k", "v")}).Handle(context.Background(), recordAt(at))
		}
		if fast.String() != ref.String() {
			t.Errorf("%s:\n got %q\nwant %q", name, fast.String(), ref.String())
		}
	}
}

func recordAt(at time.Time) slog.Record {
	r := slog.NewRecord(at, slog.LevelInfo, requestMsg, 0)
	r.AddAttrs(slog.String("method", "GET"))
	return r
}

func BenchmarkLogHandler(b *testing.B) {
	e := RequestLog{Method: "GET", Host: "127.0.0.1:18080", Path: "/", Status: 200, Injected: true, Profile: "bench", Duration: 1234567}
	for name, h := range map[string]slog.Handler{"fast": NewLogHandler(discard{}, nil), "text": slog.NewTextHandler(discard{}, nil)} {
		b.Run(name, func(b *testing.B) {
			s := &Server{log: slog.New(h)}
			for b.Loop() {
				s.logRequest(e)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
