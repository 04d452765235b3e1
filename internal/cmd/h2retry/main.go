// Command h2retry loads an HTTP/2 server as a browser would across its reloads and
// upgrades: Go's HTTP/2 client sends again a request that a GOAWAY refused (its
// stream above the GOAWAY's last-stream-id, which the server never processed), as RFC
// 9113 §6.8 allows. h2load does not, and counts such requests failed, with nginx too;
// this client's failures are requests a server lost. bench.sh's reload and upgrade
// modes print its line beside h2load's.
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
	flag.Parse()

	var ok, failed atomic.Int64
	var mu sync.Mutex
	var firstErrs []string
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for range *conns {
		c := &http.Client{Transport: transport(strings.HasPrefix(*url, "http:")), Timeout: 10 * time.Second}
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
// certificate is self-signed) or h2c with prior knowledge.
func transport(h2c bool) *http.Transport {
	p := new(http.Protocols)
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP2(true)
	}
	return &http.Transport{Protocols: p, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
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
