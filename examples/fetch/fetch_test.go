package fetch_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// buildCustomSpindle does what docs/modules.md tells a user to do: a Go module of
// their own holding the fetch module (copied here from this directory, as if it were
// the user's code) and a main package that imports spindle's command, the modules
// spindle ships and theirs; spindle comes through a replace directive to this
// checkout. No network: the module cache already holds spindle's dependencies.
func buildCustomSpindle(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() { customBin, buildErr = build() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return customBin
}

var (
	buildOnce sync.Once
	buildDir  string
	customBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func build() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	repo, _ := filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
	dir, err := os.MkdirTemp("", "myspindle-")
	if err != nil {
		return "", err
	}
	buildDir = dir
	var werr error
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil && werr == nil {
			werr = err
		}
	}
	src, err := os.ReadFile(filepath.Join(filepath.Dir(file), "fetch.go"))
	if err != nil {
		return "", err
	}
	write("fetch/fetch.go", string(src))
	// spindle's own replace directives apply only when spindle is the main module: a
	// module that builds spindle repeats them (docs/modules.md).
	gomod := "module example.com/myspindle\n\ngo 1.26\n\nrequire github.com/spindle-server/spindle v0.0.0\n\n" +
		"replace github.com/spindle-server/spindle => " + repo + "\n"
	spindleMod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(spindleMod), "\n") {
		if from, to, ok := strings.Cut(strings.TrimPrefix(line, "replace "), " => "); ok && strings.HasPrefix(line, "replace ") {
			if strings.HasPrefix(to, "./") || strings.HasPrefix(to, "../") {
				to = filepath.Join(repo, to)
			}
			gomod += "replace " + from + " => " + to + "\n"
		}
	}
	write("go.mod", gomod)
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		return "", err
	}
	write("go.sum", string(sum))
	write("main.go", `// Command myspindle is spindle with the fetch module.
package main

import (
	spindlecmd "github.com/spindle-server/spindle/cmd"
	_ "github.com/spindle-server/spindle/modules/all"

	_ "example.com/myspindle/fetch"
)

func main() { spindlecmd.Main() }
`)
	if werr != nil {
		return "", werr
	}
	bin := filepath.Join(dir, "myspindle")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	// The module proxy is the one the repository's own build uses: on a fresh machine
	// the new module's graph needs go.mod files that building spindle alone never
	// fetched (GOPROXY=off failed there).
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build of the custom spindle: %v\n%s", err, out)
	}
	return bin, nil
}

// slowAPI is an HTTP API on loopback that answers after delay.
func slowAPI(t *testing.T, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			// The delay is what the test is about: a backend that takes its time.
			time.Sleep(delay)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, `{"path":%q,"city":%q}`+"\n", r.URL.Path, r.URL.Query().Get("city"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

const fetchConf = `
worker_processes = 1
error_log        = "logs/error.log"
pid              = "logs/spindle.pid"
http {
  access_log = "off"
  server {
    listen = ["127.0.0.1:{{PORT}}"]
    location "= /hello" { return = { code = 200, body = "hello\n" } }
    location "= /slow"    { fetch_pass = "http://API/slow" }
    location "= /weather" { fetch_pass = "http://API/forecast?city=${arg.city}" }
    location "= /timeout" {
      fetch_pass    = "http://API/slow"
      fetch_timeout = "200ms"
    }
    location "= /down" { fetch_pass = "http://DOWN/" }
  }
}
`

func TestCustomSpindleWithFetchModule(t *testing.T) {
	bin := buildCustomSpindle(t)
	api := slowAPI(t, time.Second)
	down := fmt.Sprintf("127.0.0.1:%d", e2e.FreePort(t))
	config := strings.NewReplacer("API", api, "DOWN", down).Replace(fetchConf)
	inst := e2e.Start(t, config, &e2e.Options{Bin: bin})
	if n := len(e2e.Workers(inst.MasterPid())); n != 1 {
		t.Fatalf("%d workers, want 1", n)
	}

	status, body, err := inst.Get("/weather?city=Lisbon")
	if err != nil || status != 200 || body != `{"path":"/forecast","city":"Lisbon"}`+"\n" {
		t.Errorf("/weather: %d %q %v", status, body, err)
	}
	if status, _, _ := inst.Get("/down"); status != 502 {
		t.Errorf("/down: %d, want 502", status)
	}
	if status, _, _ := inst.Get("/timeout"); status != 504 {
		t.Errorf("/timeout: %d, want 504", status)
	}

	// Five requests to the 1 s API at once, on the one worker, while /hello is asked
	// every 50 ms: the five finish together after about 1 s (one after another would be
	// 5 s), and /hello never waits for them.
	start := time.Now()
	var wg sync.WaitGroup
	slow := make([]time.Duration, 5)
	for i := range slow {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if status, _, err := inst.Get("/slow"); status != 200 || err != nil {
				t.Errorf("/slow: %d %v", status, err)
			}
			slow[i] = time.Since(start)
		}(i)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var hellos []time.Duration
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(50 * time.Millisecond):
			t0 := time.Now()
			if status, _, err := inst.Get("/hello"); status != 200 || err != nil {
				t.Errorf("/hello: %d %v", status, err)
			}
			hellos = append(hellos, time.Since(t0))
		}
	}
	total := time.Since(start)
	var worstHello time.Duration
	for _, d := range hellos {
		worstHello = max(worstHello, d)
	}
	t.Logf("5 concurrent requests to a 1 s API on one worker: %v (each %v); %d /hello meanwhile, slowest %v",
		total.Round(time.Millisecond), slow, len(hellos), worstHello.Round(100*time.Microsecond))
	if total > 2500*time.Millisecond {
		t.Errorf("5 concurrent 1 s requests took %v on one worker: they ran one after another", total)
	}
	if len(hellos) < 5 || worstHello > 500*time.Millisecond {
		t.Errorf("/hello while the API calls wait: %d answered, slowest %v", len(hellos), worstHello)
	}

	log := inst.ErrorLog()
	for _, want := range []string{"fetch: ", "timed out after 200ms"} {
		if !strings.Contains(log, want) {
			t.Errorf("error log lacks %q:\n%s", want, log)
		}
	}
}

// The custom binary checks the module's directives like spindle's own: -t reports a
// bad value with its position.
func TestCustomSpindleChecksFetchDirectives(t *testing.T) {
	bin := buildCustomSpindle(t)
	prefix := t.TempDir()
	os.MkdirAll(filepath.Join(prefix, "conf"), 0o755)
	os.WriteFile(filepath.Join(prefix, "conf/spindle.hcl"), []byte(`http {
  server {
    listen = ["127.0.0.1:1"]
    location "/" {
      fetch_pass    = "http://127.0.0.1:9/"
      fetch_timeout = "soon"
    }
  }
}
`), 0o644)
	out, err := exec.Command(bin, "-p", prefix, "-t").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "spindle.hcl:6,23: invalid time value \"soon\"") {
		t.Errorf("-t: %v\n%s", err, out)
	}
	out, _ = exec.Command(bin, "-v").CombinedOutput()
	if !strings.HasPrefix(string(out), "spindle version") {
		t.Errorf("-v: %s", out)
	}
}
