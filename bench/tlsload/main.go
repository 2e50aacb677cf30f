// Command tlsload measures HTTPS request throughput and latency with keep-alive, either
// directly or through a forward proxy (CONNECT), for bench/proxy.sh: wrk cannot CONNECT.
// Each of -c connections is one goroutine with its own client connection.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	target := flag.String("url", "https://localhost:18443/", "URL to fetch")
	proxyURL := flag.String("proxy", "", "forward proxy (empty: direct)")
	conns := flag.Int("c", 32, "connections")
	dur := flag.Duration("d", 10*time.Second, "duration")
	cafiles := flag.String("cacert", "", "comma-free list: one PEM file with the CAs to trust")
	flag.Parse()
	pool := x509.NewCertPool()
	if *cafiles != "" {
		pem, err := os.ReadFile(*cafiles)
		if err != nil {
			log.Fatal(err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	var lat [][]time.Duration = make([][]time.Duration, *conns)
	var errs [64]int
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for i := range *conns {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: false}
		if *proxyURL != "" {
			u, _ := url.Parse(*proxyURL)
			tr.Proxy = http.ProxyURL(u)
		}
		c := &http.Client{Transport: tr}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				s := time.Now()
				resp, err := c.Get(*target)
				if err != nil {
					errs[i%64]++
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs[i%64]++
					continue
				}
				lat[i] = append(lat[i], time.Since(s))
			}
		}()
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	nerr := 0
	for _, e := range errs {
		nerr += e
	}
	slices.Sort(all)
	if len(all) == 0 {
		log.Fatalf("no successful requests (%d errors)", nerr)
	}
	p := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))].Microseconds()) / 1000 }
	fmt.Printf("rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d\n", float64(len(all))/dur.Seconds(), p(0.50), p(0.99), nerr)
}
