// Package fetch is an example spindle module written as a user would write one, outside
// spindle's tree, against the public API only (modules/httpcore): a content handler
// that calls an HTTP API with Go's net/http client — a blocking client library — and
// returns its answer.
//
//	location "/weather" {
//	  fetch_pass    = "http://127.0.0.1:9000/forecast?city=${arg.city}"
//	  fetch_timeout = "2s"
//	}
//
// The handler simply blocks in client.Do. Because it is registered with SetContent
// (not SetContentInline), each request that reaches it runs as a goroutine of its
// own, and a goroutine waiting on a socket costs the worker nothing: Go's netpoller
// parks it and the worker's one thread serves other requests meanwhile. Five
// requests to a backend that takes 1 s finish together after about 1 s on one worker,
// while /hello keeps answering in a millisecond (fetch_test.go measures both). Any
// Go library that does its I/O through Go's net package behaves the same: database
// drivers, gRPC, cloud SDKs. What must not be called is code that blocks its thread
// outside Go's scheduler (cgo calls that wait, syscalls on blocking descriptors).
//
// docs/modules.md walks through this file and shows how to build a spindle that
// includes it.
package fetch

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
)

// Conf is the module's configuration of one location (nginx's loc_conf): a copy of
// the enclosing context's, changed by the directives written in the location.
type Conf struct {
	url     *httpcore.Expr // fetch_pass: a template over request variables
	timeout time.Duration  // fetch_timeout
}

// mod is the module's handle, declared with the type of its configuration: its
// functions reach a location's Conf through it (mod.Of, mod.Cmd, mod.Req) without
// naming Module, which would be an initialization cycle (Module names them).
var mod = httpcore.Define(func() *Conf { return &Conf{timeout: 10 * time.Second} })

// Module is the fetch module, declared in one piece. Registering it in the package
// variable's initializer (rather than in init) keeps it so; importing the package is
// what links the module into a spindle binary.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "fetch",
	Order: httpcore.OrderContent,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "fetch_pass", Context: httpcore.CtxLocation, Set: setPass},
		// A shared setter: "2s", "500ms", a bare number of seconds, decoded and checked
		// as every spindle time is, the error reported at the value.
		{Name: "fetch_timeout", Context: httpcore.CtxHTTP | httpcore.CtxServer | httpcore.CtxLocation,
			Set: httpcore.SetDuration(func(c *Conf) *time.Duration { return &c.timeout })},
	},
	// Each worker process has its own client and its own idle connections; a worker
	// that exits closes them.
	ExitWorker: func(*httpcore.Config) { transport.CloseIdleConnections() },
})

// transport keeps idle connections to the APIs for the worker's requests to share.
var transport = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 60 * time.Second}

var client = &http.Client{
	Transport: transport,
	// The API's redirects are the client's business, as with nginx's proxy_pass.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// fetch_pass = "http://host:port/path?${args}" makes the location's content the
// answer of that URL, requested with GET.
func setPass(c *httpcore.Cmd) error {
	e, err := c.AttrExpr()
	if err != nil {
		return err
	}
	cf := mod.Cmd(c)
	cf.url = e
	// SetContent, not SetContentInline: the handler waits for the API.
	return c.Loc.SetContent("fetch", cf.handle)
}

// handle is the content handler. It runs on the request's own goroutine, so it may
// block; it answers as nginx's proxy module does when the backend fails: 504 for a
// timeout, 502 for anything else, with the reason in the error log.
func (cf *Conf) handle(r *httpcore.Request) httpcore.Action {
	url, err := cf.url.String(r)
	if err != nil {
		r.Logf(httpcore.LogError, "fetch_pass: %v", err)
		return r.Error(http.StatusInternalServerError)
	}
	// fetch_timeout bounds the whole call: connecting, waiting, reading the answer;
	// "0" means no timeout, as for spindle's other backend timeouts.
	ctx := context.Background()
	if cf.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cf.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		r.Logf(httpcore.LogError, "fetch_pass %q: %v", url, err)
		return r.Error(http.StatusInternalServerError)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			r.Logf(httpcore.LogError, "fetch: %s timed out after %s", url, cf.timeout)
			return r.Error(http.StatusGatewayTimeout)
		}
		r.Logf(httpcore.LogError, "fetch: %v", err)
		return r.Error(http.StatusBadGateway)
	}
	defer resp.Body.Close()
	r.SetStatus(resp.StatusCode)
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		r.RespHeader().Set("Content-Type", ct)
	}
	if _, err := io.Copy(r, resp.Body); err != nil {
		r.Logf(httpcore.LogError, "fetch: reading %s: %v", url, err)
		if !r.HeaderSent() {
			return r.Error(http.StatusBadGateway)
		}
		// Part of the answer went out: the client must see it cut short.
		r.AbortConnection()
	}
	return httpcore.Finished
}
