package status_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/rewrite"
	"github.com/spindle-server/spindle/modules/status"
)

// stubRe parses nginx's stub_status page.
var stubRe = regexp.MustCompile(`^Active connections: (\d+) \nserver accepts handled requests\n (\d+) (\d+) (\d+) \nReading: (\d+) Writing: (\d+) Waiting: (\d+) \n$`)

type stub struct{ active, accepts, handled, requests, reading, writing, waiting int64 }

func parseStub(t *testing.T, body string) stub {
	t.Helper()
	m := stubRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("not a stub_status page: %q", body)
	}
	n := make([]int64, 8)
	for i := 1; i < 8; i++ {
		n[i], _ = strconv.ParseInt(m[i], 10, 64)
	}
	return stub{n[1], n[2], n[3], n[4], n[5], n[6], n[7]}
}

func parseJSON(t *testing.T, body string) status.Page {
	t.Helper()
	var p status.Page
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("status JSON %q: %v", body, err)
	}
	return p
}

const inProcessConf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    location "= /status" { stub_status = true }
    location "= /status.json" { stub_status = { format = "json" } }
    location "= /missing" { return = 404 }
    location "/" { return = 200 }
  }
}
`

// Without a master (the core run in-process) the page shows the local engine's counters.
func TestInProcessFallback(t *testing.T) {
	s := testserver.Start(t, inProcessConf)
	for i := 0; i < 3; i++ {
		s.Get("/ok")
	}
	s.Get("/missing")
	s.Get("/missing")
	s.Settle()
	r := s.Get("/status")
	if r.Status != 200 || r.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("/status: %d %v", r.Status, r.Header)
	}
	st := parseStub(t, r.Body)
	// The status request is counted, and is the one writing; earlier connections may
	// still be closing, so active is at least one.
	if st.accepts != 6 || st.handled != 6 || st.requests != 6 || st.reading != 0 || st.writing != 1 ||
		st.active < 1 || st.waiting != st.active-1 {
		t.Errorf("stub_status = %+v from %q", st, r.Body)
	}
	s.Settle()
	r = s.Get("/status.json")
	if r.Status != 200 || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/status.json: %d %v", r.Status, r.Header)
	}
	p := parseJSON(t, r.Body)
	if p.Requests.Total != 7 || p.Connections.Accepted != 7 || p.Connections.Handled != 7 || p.Connections.Writing != 1 ||
		p.Workers != 1 || p.Responses["2xx"] != 4 || p.Responses["4xx"] != 2 || p.Responses["5xx"] != 0 || len(p.Responses) != 5 {
		t.Errorf("status JSON = %+v from %q", p, r.Body)
	}
	// The query string chooses the form too.
	if r := s.Get("/status?format=json"); parseJSON(t, r.Body).Requests.Total != 8 {
		t.Errorf("/status?format=json = %q", r.Body)
	}
	if r := s.Get("/status.json?format=text"); parseStub(t, r.Body).requests != 9 {
		t.Errorf("/status.json?format=text = %q", r.Body)
	}
}

func TestMethods(t *testing.T) {
	s := testserver.Start(t, inProcessConf)
	r := s.Do("HEAD", "/status", "")
	if r.Status != 200 || r.Body != "" || r.Header.Get("Content-Length") == "" {
		t.Errorf("HEAD /status: %d %q %v", r.Status, r.Body, r.Header)
	}
	r = s.Do("POST", "/status", "x")
	if r.Status != 405 || r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /status: %d %v", r.Status, r.Header)
	}
}

func TestStatusConfigErrors(t *testing.T) {
	wrap := func(server string) string {
		return "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n" + server + "\n  }\n}\n"
	}
	cases := []struct{ config, want string }{
		{wrap(`    location "/" { stub_status = "maybe" }`), `expected a bool`},
		{wrap(`    location "/" { stub_status = { format = "xml" } }`), `unknown stub_status format "xml"`},
		{wrap(`    location "/" { stub_status = { colour = "red" } }`), `unknown field "colour"`},
		{wrap(`    location "/" { stub_status = 3 }`), `expected true, false or { format = "json" }`},
		{wrap(`    stub_status = true`), `"stub_status" is not allowed in server context`},
		{wrap(`    location "/" {
      stub_status = true
      return      = 200
    }`), ``},
	}
	for _, c := range cases {
		_, err := testserver.BuildString(t, c.config, nil)
		if c.want == "" {
			if err != nil {
				t.Errorf("config\n%s\nerror = %v", c.config, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config\n%s\nerror = %v, want %q", c.config, err, c.want)
		}
	}
}

func TestNestedLocationsHaveTheirOwnContent(t *testing.T) {
	s := testserver.Start(t, `
http {
  server {
    listen = ["127.0.0.1:0"]
    location "/status" {
      stub_status = true
      location "/status/off" { return = { code = 200, body = "nested\n" } }
      if {
        cond = arg.json != ""
        stub_status = { format = "json" }
      }
    }
  }
}
`)
	if r := s.Get("/status/off"); r.Body != "nested\n" {
		t.Errorf("/status/off = %q", r.Body)
	}
	parseStub(t, s.Get("/status").Body)
	if p := parseJSON(t, s.Get("/status?json=1").Body); p.Requests.Total != 3 {
		t.Errorf("/status?json=1 = %+v", p)
	}
}

// With a master, the page sums the counters of every worker of the generation.
func TestSumsOverWorkers(t *testing.T) {
	inst := e2e.Start(t, `
worker_processes = 2
error_log        = { path = "logs/error.log", level = "info" }
http {
  access_log = "off"
  server {
    listen = ["127.0.0.1:{{PORT}}"]
    location "= /status" { stub_status = true }
    location "= /missing" { return = 404 }
    location "/" { return = { code = 200, body = "${pid}\n" } }
  }
}
`, nil)
	perWorker := map[string]int{}
	n := 0
	if !e2e.WaitFor(20*time.Second, func() bool {
		code, body, err := inst.Get(fmt.Sprintf("/r/%d", n))
		if err != nil || code != 200 {
			t.Fatalf("GET: %d %v", code, err)
		}
		perWorker[strings.TrimSpace(body)]++
		n++
		return len(perWorker) == 2 && n >= 20
	}) {
		t.Fatalf("requests reached only workers %v", perWorker)
	}
	if code, _, _ := inst.Get("/missing"); code != 404 {
		t.Fatalf("/missing: %d", code)
	}
	t.Logf("%d requests served by workers %v", n, perWorker)
	code, body, err := inst.Get("/status")
	if err != nil || code != 200 {
		t.Fatalf("/status: %d %v", code, err)
	}
	st := parseStub(t, body)
	// Each worker counted only its share; the page shows them all, the status
	// request included. The start-up probe connection has no request. The request
	// before may still be writing: as in nginx, a request counts as writing until its
	// log phase, which comes after its response is sent.
	total := int64(n + 2)
	if st.requests != total || st.accepts < total || st.handled != st.accepts || st.writing < 1 || st.writing > 2 || st.reading != 0 || st.active < 1 {
		t.Errorf("stub_status = %+v, want %d requests (workers served %v)", st, total, perWorker)
	}
	code, body, err = inst.Get("/status?format=json")
	if err != nil || code != 200 {
		t.Fatalf("/status?format=json: %d %v", code, err)
	}
	p := parseJSON(t, body)
	if p.Workers != 2 || p.Requests.Total != total+1 || p.Responses["2xx"] != int64(n+1) || p.Responses["4xx"] != 1 ||
		p.Generation != 1 {
		t.Errorf("status JSON = %+v, want %d requests, %d 2xx, 1 4xx over 2 workers", p, total+1, n+1)
	}

	// A reload starts a generation with counters of its own.
	if out, code := inst.Spindle("-s", "reload"); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	master := inst.MasterPid()
	if !e2e.WaitFor(15*time.Second, func() bool { return len(e2e.Workers(master)) == 2 }) {
		t.Fatalf("old workers did not exit: %v", e2e.Workers(master))
	}
	_, body, err = inst.Get("/status?format=json")
	if err != nil {
		t.Fatal(err)
	}
	p = parseJSON(t, body)
	if p.Workers != 2 || p.Generation != 2 || p.Requests.Total != 1 {
		t.Errorf("after reload status JSON = %+v, want generation 2 with only the status request", p)
	}
}
