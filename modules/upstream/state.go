package upstream

import (
	"strconv"
	"strings"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
)

// Try is one attempt of a request at an upstream server, for the $upstream_*
// variables.
type Try struct {
	Addr string
	// Status is the HTTP status the server answered (or the module's mapping of a
	// redis/memcached reply); 502 or 504 when it did not answer.
	Status int
	// Connect, Header and Response are the times to connect, to receive the response
	// header and to receive the whole response; -1 when not reached.
	Connect, Header, Response time.Duration
}

// requestState is the upstream module's per-request context.
type requestState struct {
	tries  []Try
	header *httpcore.Header
}

func stateOf(r *httpcore.Request, create bool) *requestState {
	if s, ok := mod.Ctx(r).(*requestState); ok {
		return s
	}
	if !create {
		return nil
	}
	s := &requestState{}
	mod.SetCtx(r, s)
	return s
}

// Record adds an attempt to the request's $upstream_addr, $upstream_status and
// timing variables.
func Record(r *httpcore.Request, t Try) {
	s := stateOf(r, true)
	s.tries = append(s.tries, t)
}

// FinishLast sets the response time of the request's last attempt, known only once
// its body has gone through (the attempt is recorded when its header arrives, so that
// header filters see $upstream_status).
func FinishLast(r *httpcore.Request, response time.Duration) {
	if s := stateOf(r, false); s != nil && len(s.tries) > 0 {
		s.tries[len(s.tries)-1].Response = response
	}
}

// SetResponseHeader makes h the upstream response header that $upstream_http.NAME
// reads. h must not change afterwards.
func SetResponseHeader(r *httpcore.Request, h *httpcore.Header) {
	stateOf(r, true).header = h
}

// Recorded returns the attempts recorded for r.
func Recorded(r *httpcore.Request) []Try {
	if s := stateOf(r, false); s != nil {
		return s.tries
	}
	return nil
}

func joinTries(r *httpcore.Request, f func(Try) string) string {
	s := stateOf(r, false)
	if s == nil || len(s.tries) == 0 {
		return ""
	}
	var b strings.Builder
	for i, t := range s.tries {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f(t))
	}
	return b.String()
}

func seconds(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d.Milliseconds())/1000, 'f', 3, 64)
}

func registerVars() {
	httpcore.RegisterVar("upstream_addr", func(r *httpcore.Request) string {
		return joinTries(r, func(t Try) string { return t.Addr })
	})
	httpcore.RegisterVar("upstream_status", func(r *httpcore.Request) string {
		return joinTries(r, func(t Try) string {
			if t.Status == 0 {
				return "-"
			}
			return strconv.Itoa(t.Status)
		})
	})
	httpcore.RegisterVar("upstream_connect_time", func(r *httpcore.Request) string {
		return joinTries(r, func(t Try) string { return seconds(t.Connect) })
	})
	httpcore.RegisterVar("upstream_header_time", func(r *httpcore.Request) string {
		return joinTries(r, func(t Try) string { return seconds(t.Header) })
	})
	httpcore.RegisterVar("upstream_response_time", func(r *httpcore.Request) string {
		return joinTries(r, func(t Try) string { return seconds(t.Response) })
	})
	httpcore.RegisterPrefixVar("upstream_http", func(r *httpcore.Request, name string) (string, bool) {
		s := stateOf(r, false)
		if s == nil || s.header == nil {
			return "", false
		}
		return s.header.Lookup(name)
	}, nil, func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "-") })
}
