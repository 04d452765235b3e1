// Command h2retry loads an HTTP/2 server as a browser would across its reloads and
// upgrades: Go's HTTP/2 client sends again a request that a GOAWAY refused (its
// stream above the GOAWAY's last-stream-id, which the server never processed), as RFC
// 9113 §6.8 allows. h2load does not, and counts such requests failed, with nginx too;
// this client's failures are requests a server lost. bench.sh's reload and upgrade
// modes print its line beside h2load's.
//
// Each client keeps one connection at a time and resumes its TLS session, as a browser
// does. Go's transport left to itself dials one new connection per request waiting
// when a GOAWAY comes (about ten per client at -m10): in bench.sh's 20 reloads 1 s
// apart, with the client's CPU busy, those dials starved the client (~5,000
// goroutines dialing, ~2,600 in handshakes) and it failed ~1,800 requests of 6,500
// on its own 10 s timeout, against spindle and on the same machine; with one
// connection per client, 228,000 succeeded and none failed (-per-request-dials
// brings the old behaviour back).
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "https://127.0.0.1:8443/hello", "URL to GET (https: ALPN h2; http: h2c with prior knowledge)")
	conns := flag.Int("c", 10, "clients, each with its own connection")
	streams := flag.Int("m", 10, "requests in flight per client")
	dur := flag.Duration("d", 10*time.Second, "how long to load")
	storm := flag.Bool("per-request-dials", false, "let Go's transport dial a connection per waiting request, without TLS session resumption")
	flag.Parse()

	var ok, failed atomic.Int64
	var mu sync.Mutex
	var firstErrs []string
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for range *conns {
		c := &http.Client{Transport: transport(strings.HasPrefix(*url, "http:"), *storm), Timeout: 10 * time.Second}
		for range *streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					err := get(c, *url)
					if err == nil {
						ok.Add(1)
						continue
					}
					failed.Add(1)
					mu.Lock()
					if len(firstErrs) < 5 {
						firstErrs = append(firstErrs, err.Error())
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	fmt.Printf("requests: %d succeeded, %d failed\n", ok.Load(), failed.Load())
	for _, e := range firstErrs {
		fmt.Fprintln(os.Stderr, "h2retry:", e)
	}
}

// transport is one HTTP/2 connection's client: TLS without verification (the bench's
// certificate is self-signed) or h2c with prior knowledge; one connection at a time
// and a session cache unless storm.
func transport(h2c, storm bool) *http.Transport {
	p := new(http.Protocols)
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP2(true)
	}
	t := &http.Transport{Protocols: p, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if !storm {
		t.MaxConnsPerHost = 1
		t.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	return t
}

// get fetches url and reads the whole body: a 200 with its body is a success.
func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
