// Command hostile measures how a server holds up to slow clients: it opens slowloris
// connections (a partial request head, then a header byte every interval) and slow
// request bodies (a large Content-Length, then a byte every interval), and meanwhile
// sends legitimate requests, one connection each, recording their latency and
// failures. It reports the legitimate requests' p99 and errors, and the server
// process's resident memory idle, at its peak during the attack and after the
// attack's connections are gone.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	pid := flag.Int("pid", 0, "server process whose RSS is measured")
	slowloris := flag.Int("slowloris", 1000, "slowloris connections")
	bodies := flag.Int("bodies", 200, "slow request bodies")
	bodySize := flag.Int("body-size", 1000000, "Content-Length of the slow bodies")
	bodyPath := flag.String("body-path", "/upload", "path the slow bodies are sent to (a location that reads the body)")
	path := flag.String("path", "/hello", "path of the legitimate requests")
	interval := flag.Duration("interval", 5*time.Second, "time between two bytes of a slow client")
	duration := flag.Duration("duration", 20*time.Second, "how long the attack lasts")
	after := flag.Duration("after", 10*time.Second, "how long after the attack RSS is measured again")
	flag.Parse()

	idle := rss(*pid)
	var peak atomic.Int64
	peak.Store(int64(idle))
	stopSample := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSample:
				return
			case <-t.C:
				if r := int64(rss(*pid)); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opened, closedEarly atomic.Int64
	slow := func(first string, trickle byte) {
		defer wg.Done()
		c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		opened.Add(1)
		if _, err := io.WriteString(c, first); err != nil {
			closedEarly.Add(1)
			return
		}
		t := time.NewTicker(*interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := c.Write([]byte{trickle}); err != nil {
					closedEarly.Add(1)
					return
				}
			}
		}
	}
	for i := 0; i < *slowloris; i++ {
		wg.Add(1)
		go slow("GET "+*path+" HTTP/1.1\r\nHost: bench\r\nX-Slow: ", 'a')
	}
	for i := 0; i < *bodies; i++ {
		wg.Add(1)
		go slow(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\nabc", *bodyPath, *bodySize), 'b')
	}

	var lat []time.Duration
	errs := 0
	deadline := time.Now().Add(*duration)
	for time.Now().Before(deadline) {
		start := time.Now()
		if err := get(*addr, *path); err != nil {
			errs++
		} else {
			lat = append(lat, time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	time.Sleep(*after)
	close(stopSample)
	end := rss(*pid)

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p99 := time.Duration(0)
	if len(lat) > 0 {
		p99 = lat[len(lat)*99/100]
	}
	fmt.Printf("legit %s: %d ok, %d errors, p99 %.1f ms; attack: %d connections opened, %d closed by the server; RSS %d KB idle, %d KB peak, %d KB %v after\n",
		*path, len(lat), errs, float64(p99.Microseconds())/1000, opened.Load(), closedEarly.Load(), idle, peak.Load(), end, *after)
}

// get sends one request on a new connection and reads the whole response.
func get(addr, path string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

func rss(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
