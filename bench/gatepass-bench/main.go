// Command gatepass-bench runs gatepass's proxy with a static token, for bench/proxy.sh.
// It is not part of gatepass: a real agent gets tokens from the broker.
//
// With -mode goproxy it runs instead the "ten-line goproxy" the issue compares against:
// goproxy's own handler with a tuned pool and a header-setting OnRequest hook.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/gatepass-dev/gatepass/proxy"
)

type staticSource struct {
	gateways map[string]proxy.Gateway
	token    string
}

func (s staticSource) Gateway(host, port string) (proxy.Gateway, bool) {
	gw, ok := s.gateways[net.JoinHostPort(host, port)]
	return gw, ok
}

func (s staticSource) TokenFor(context.Context, string, string) (proxy.Token, error) {
	return proxy.Token{Value: s.token, Header: "Authorization", Expiry: time.Now().Add(time.Hour)}, nil
}

type memStore struct{ cert, key []byte }

func (m *memStore) LoadCA() ([]byte, []byte, bool, error) { return m.cert, m.key, m.cert != nil, nil }
func (m *memStore) SaveCA(c, k []byte) error              { m.cert, m.key = c, k; return nil }

func main() {
	listen := flag.String("listen", "127.0.0.1:18787", "proxy address")
	plain := flag.String("plain-gateway", "", "host:port gateway allowed over plain HTTP")
	tlsGW := flag.String("tls-gateway", "", "host:port gateway reached over TLS (intercepted)")
	caOut := flag.String("ca-out", "", "write gatepass's CA certificate here")
	upstreamCA := flag.String("upstream-ca", "", "PEM file of the upstream's CA")
	mode := flag.String("mode", "gatepass", "gatepass, goproxy, or sink (an upstream for the streaming test)")
	cert := flag.String("cert", "", "sink: serve TLS with this PEM certificate (key in -key)")
	key := flag.String("key", "", "sink: PEM key for -cert")
	verbose := flag.Bool("v", false, "log every request")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here until exit")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}

	src := staticSource{gateways: map[string]proxy.Gateway{}, token: "bench-token"}
	var names []string
	for _, gw := range strings.Split(*plain, ",") {
		if gw != "" {
			src.gateways[gw] = proxy.Gateway{Profile: "bench", PlainHTTP: true}
		}
	}
	for _, gw := range strings.Split(*tlsGW, ",") {
		if gw != "" {
			src.gateways[gw] = proxy.Gateway{Profile: "bench"}
			h, _, _ := net.SplitHostPort(gw)
			if !slices.Contains(names, h) {
				names = append(names, h)
			}
		}
	}
	var roots *x509.CertPool
	if *upstreamCA != "" {
		pem, err := os.ReadFile(*upstreamCA)
		if err != nil {
			log.Fatal(err)
		}
		roots = x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
	}
	if *mode == "sink" {
		runSink(*listen, *cert, *key)
		return
	}
	if *mode == "goproxy" {
		runGoproxy(*listen, roots)
		return
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	srv, err := proxy.New(proxy.Options{
		Listen: *listen, Tokens: src, CA: &memStore{}, CANames: names, CACertPath: *caOut,
		UpstreamRootCAs: roots,
		// As `gatepass proxy` logs: through a LogWriter flushed every 100ms.
		Logger: slog.New(proxy.NewLogHandler(proxy.NewLogWriter(os.Stderr, 100*time.Millisecond), &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, "gatepass-bench listening on", srv.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
}

func runGoproxy(listen string, roots *x509.CertPool) {
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, TLSClientConfig: &tls.Config{RootCAs: roots}}
	gp.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		r.Header.Set("Authorization", "Bearer bench-token")
		return r, nil
	})
	log.Fatal(http.ListenAndServe(listen, gp))
}

// runSink is the upstream of the streaming test: POST/PUT /upload reads the whole body
// and answers its length; GET /big?n=BYTES sends n zero bytes with a Content-Length.
func runSink(listen, cert, key string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d\n", n)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "want ?n=BYTES", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 64<<10)
		for n > 0 {
			k := min(n, int64(len(buf)))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	if cert != "" {
		log.Fatal(http.ListenAndServeTLS(listen, cert, key, mux))
	}
	log.Fatal(http.ListenAndServe(listen, mux))
}
