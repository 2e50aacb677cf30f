package proxy

import (
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// requestMsg is the message of the proxy's one line per request (logRequest).
const requestMsg = "proxy request"

// NewLogHandler returns slog's TextHandler over w, except that the proxy writes its
// per-request lines through it directly (Server.logRequest), byte for byte as the
// TextHandler would, without building a slog.Record (slog's formatting was 5–7% of
// the proxy's CPU under load, see bench/HISTORY.md). A line it cannot vouch for (a
// value the TextHandler would quote, a handler from With, a ReplaceAttr or AddSource
// option) goes through slog. Writes to w are serialised, as the TextHandler's are.
func NewLogHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	lw := &lockedWriter{w: w}
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	return &logHandler{Handler: slog.NewTextHandler(lw, opts), w: lw, fast: opts.ReplaceAttr == nil && !opts.AddSource}
}

type logHandler struct {
	slog.Handler
	w    *lockedWriter
	fast bool
}

type lockedWriter struct {
	mu sync.Mutex // serialises Write
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// logRequest writes e's line at time at; false if it must go through slog (a value
// the TextHandler would quote, or a handler that is not the fast kind).
func (h *logHandler) logRequest(at time.Time, e RequestLog) bool {
	if !h.fast || !plainLogValue(e.Method) || !plainLogValue(e.Host) || !plainLogValue(e.Path) ||
		(e.Profile != "" && !plainLogValue(e.Profile)) || (e.Err != "" && !plainLogValue(e.Err)) {
		return false
	}
	bp := lineBufs.Get().(*[]byte)
	b := appendRequestLine((*bp)[:0], at, e)
	h.w.Write(b)
	*bp = b
	lineBufs.Put(bp)
	return true
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{Handler: h.Handler.WithAttrs(as), w: h.w}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{Handler: h.Handler.WithGroup(name), w: h.w}
}

// appendRequestLine formats e's line as slog's TextHandler formats the record
// logRequest would make (RequestLog.appendAttrs): time (RFC 3339, milliseconds),
// level, msg, then key=value for each attribute. The caller has checked that no value
// needs quoting.
func appendRequestLine(b []byte, at time.Time, e RequestLog) []byte {
	b = append(b, "time="...)
	b = appendRFC3339Millis(b, at.Round(0))
	b = append(b, ` level=INFO msg="proxy request" method=`...)
	b = append(b, e.Method...)
	b = append(b, " host="...)
	b = append(b, e.Host...)
	b = append(b, " path="...)
	b = append(b, e.Path...)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, " injected="...)
	b = strconv.AppendBool(b, e.Injected)
	b = append(b, " duration="...)
	b = append(b, e.Duration.String()...) // digits, '.', '-' and unit letters: never quoted
	if e.Profile != "" {
		b = append(b, " profile="...)
		b = append(b, e.Profile...)
	}
	if e.Err != "" {
		b = append(b, " err="...)
		b = append(b, e.Err...)
	}
	return append(b, '\n')
}

// plainLogValue reports whether the TextHandler writes s as it is: not empty, and
// only visible ASCII other than '=' and '"'.
func plainLogValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '=' || c == '"' {
			return false
		}
	}
	return true
}

// appendRFC3339Millis is slog's own time format (log/slog.appendRFC3339Millis).
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...) // drop the 4th digit
}
