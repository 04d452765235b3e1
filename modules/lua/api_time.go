package lua

import (
	"math"
	"net/http"
	"time"

	glua "github.com/yuin/gopher-lua"
)

// installTime adds ngx.sleep and the time functions. ngx_lua serves ngx.time and
// ngx.now from nginx's cached clock; spindle reads the clock (cheap with the vDSO),
// so ngx.update_time has nothing to do.
func (v *vm) installTime(ngx *glua.LTable) {
	L := v.L
	setFuncs(L, ngx, map[string]glua.LGFunction{
		"sleep": v.ngxSleep,
		"time": func(L *glua.LState) int {
			L.Push(glua.LNumber(time.Now().Unix()))
			return 1
		},
		"now": func(L *glua.LState) int {
			L.Push(glua.LNumber(float64(time.Now().UnixMilli()) / 1000))
			return 1
		},
		"update_time": func(L *glua.LState) int { return 0 },
		"today": func(L *glua.LState) int {
			L.Push(glua.LString(time.Now().Format("2006-01-02")))
			return 1
		},
		"localtime": func(L *glua.LState) int {
			L.Push(glua.LString(time.Now().Format("2006-01-02 15:04:05")))
			return 1
		},
		"utctime": func(L *glua.LState) int {
			L.Push(glua.LString(time.Now().UTC().Format("2006-01-02 15:04:05")))
			return 1
		},
		"http_time": func(L *glua.LState) int {
			L.Push(glua.LString(unixTime(L).Format(http.TimeFormat)))
			return 1
		},
		"cookie_time": func(L *glua.LState) int {
			L.Push(glua.LString(unixTime(L).Format("Mon, 02-Jan-06 15:04:05 GMT")))
			return 1
		},
		"parse_http_time": func(L *glua.LState) int {
			s := L.CheckString(1)
			for _, layout := range []string{http.TimeFormat, time.RFC850, time.ANSIC, "Mon, 02-Jan-06 15:04:05 GMT", "Mon, 02-Jan-2006 15:04:05 GMT"} {
				if tm, err := time.Parse(layout, s); err == nil {
					L.Push(glua.LNumber(tm.Unix()))
					return 1
				}
			}
			L.Push(glua.LNil)
			return 1
		},
	})
}

func unixTime(L *glua.LState) time.Time {
	sec := float64(L.CheckNumber(1))
	return time.Unix(int64(math.Floor(sec)), 0).UTC()
}

// ngxSleep is ngx.sleep(seconds): the thread waits without holding the VM; ngx.sleep(0)
// lets the other threads run.
func (v *vm) ngxSleep(L *glua.LState) int {
	t := v.current(L)
	if !t.run.phase.canYield() {
		return apiDisabled(L, "ngx.sleep", t.run.phase)
	}
	sec := float64(L.CheckNumber(1))
	if sec < 0 || math.IsNaN(sec) {
		L.ArgError(1, "invalid sleeping time")
	}
	d := time.Duration(sec * float64(time.Second))
	kill := t.killCh()
	v.blocking(t, func() {
		if d <= 0 {
			yield()
			return
		}
		tm := time.NewTimer(d)
		select {
		case <-tm.C:
		case <-kill:
			tm.Stop()
		}
	})
	return 0
}
