// Package authbasic is nginx's ngx_http_auth_basic_module for spindle: HTTP Basic
// authentication against an htpasswd file, checked in the access phase. The file is
// read for every request that carries credentials, as nginx reads it, so edits apply
// without a reload.
package authbasic

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"sync"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/access"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Conf is the module's per-context configuration.
type Conf struct {
	realm *httpcore.Expr // nil: off
	file  *httpcore.Expr
}

// Module is the auth_basic module.
var Module = &httpcore.Module{
	Name: "auth_basic",
	// After allow/deny and before auth_request, the order nginx runs them in.
	Order:   httpcore.OrderAccess + 50,
	NewConf: func() any { return &Conf{} },
	Directives: []httpcore.Directive{
		{Name: "auth_basic", Context: ctxAuth, Set: setRealm},
		{Name: "auth_basic_user_file", Context: ctxAuth, Set: setFile},
	},
}

const ctxAuth = httpcore.CtxHTTP | httpcore.CtxServer | httpcore.CtxLocation

func init() {
	Module.Install = install
	httpcore.Register(Module)
}

func install(l *httpcore.Location) error {
	c := httpcore.LocConf[Conf](l, Module)
	if c.realm != nil && c.file != nil {
		l.AddInlineHandler(httpcore.PhaseAccess, Module.Order, c.check)
	}
	return nil
}

// auth_basic = "Restricted" turns authentication on with that realm (a template);
// "off" turns an inherited one off.
func setRealm(c *httpcore.Cmd) error {
	e, err := c.AttrExpr()
	if err != nil {
		return err
	}
	cf := c.Conf().(*Conf)
	if e.IsConst() {
		s, err := conf.String(c.Attr())
		if err != nil {
			return err
		}
		if s == "off" {
			cf.realm = nil
			return nil
		}
	}
	cf.realm = e
	return nil
}

// auth_basic_user_file = "conf/htpasswd": the file (a template), relative to the
// prefix as spindle's other paths.
func setFile(c *httpcore.Cmd) error {
	e, err := c.AttrExpr()
	if err != nil {
		return err
	}
	if e.IsConst() {
		if s, err := conf.String(c.Attr()); err != nil || s == "" {
			return c.Errorf("auth_basic_user_file needs a file name")
		}
	}
	c.Conf().(*Conf).file = e
	return nil
}

func (c *Conf) check(r *httpcore.Request) httpcore.Action {
	if r.IsSubrequest() {
		return httpcore.Continue
	}
	realm, err := c.realm.String(r)
	if err != nil {
		r.Logf(httpcore.LogError, "auth_basic: %v", err)
		return r.Error(500)
	}
	if realm == "off" {
		return httpcore.Continue
	}
	user, password, ok := r.BasicAuth()
	if !ok {
		r.Logf(httpcore.LogError, "no user/password was provided for basic authentication")
		return challenge(r, realm)
	}
	name, err := c.file.String(r)
	if err != nil {
		r.Logf(httpcore.LogError, "auth_basic_user_file: %v", err)
		return r.Error(500)
	}
	path := conf.Resolve(r.Config().Main.Prefix, name)
	data, err := os.ReadFile(path)
	if err != nil {
		// nginx: a missing file is 403, any other failure 500.
		if errors.Is(err, os.ErrNotExist) {
			r.Logf(httpcore.LogError, "open() %q failed: %v", path, err)
			return access.Deny(r, 403)
		}
		r.Logf(httpcore.LogCrit, "open() %q failed: %v", path, err)
		return r.Error(500)
	}
	hash, found := lookup(data, user)
	if !found {
		r.Logf(httpcore.LogError, "user %q was not found in %q", user, path)
		return challenge(r, realm)
	}
	match, err := verifyCached(hash, password)
	if err != nil {
		r.Logf(httpcore.LogError, "user %q in %q: %v", user, path, err)
		return r.Error(500)
	}
	if !match {
		r.Logf(httpcore.LogError, "user %q: password mismatch", user)
		return challenge(r, realm)
	}
	return access.Allow(r)
}

func challenge(r *httpcore.Request, realm string) httpcore.Action {
	r.RespHeader().Set("WWW-Authenticate", `Basic realm="`+realm+`"`)
	return access.Deny(r, 401)
}

// lookup finds user's password field in htpasswd data, with nginx's parser: one
// "user:password" entry a line, lines starting with '#' skipped, the password ending
// at the end of the line or at a further ':' (htpasswd comment fields).
func lookup(data []byte, user string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	for sc.Scan() {
		line := bytes.TrimRight(sc.Bytes(), "\r")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		login, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok || string(login) != user {
			continue
		}
		pw, _, _ := bytes.Cut(rest, []byte{':'})
		return string(pw), true
	}
	return "", false
}

// verified remembers password fields and passwords that matched, so that a client
// sending the same credentials on every request pays bcrypt's cost once per worker
// rather than per request: measured on the shared 2-core test machine, a bcrypt check
// took 12 ms at htpasswd -B's default cost 5 and 320 ms at cost 10, time the worker's
// event loop serves nothing else. Only matches are kept (a guess always pays the full
// cost), under a digest of both, so the map holds no password.
var verified struct {
	sync.Mutex
	m map[[sha256.Size]byte]struct{}
}

// maxVerified bounds the cache; it is emptied when full (1,024 digests, 32 KB).
const maxVerified = 1024

func verifyCached(hash, password string) (bool, error) {
	h := sha256.New()
	h.Write([]byte(hash))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var key [sha256.Size]byte
	h.Sum(key[:0])
	verified.Lock()
	_, ok := verified.m[key]
	verified.Unlock()
	if ok {
		return true, nil
	}
	match, err := Verify(hash, password)
	if match {
		verified.Lock()
		if verified.m == nil || len(verified.m) >= maxVerified {
			verified.m = make(map[[sha256.Size]byte]struct{})
		}
		verified.m[key] = struct{}{}
		verified.Unlock()
	}
	return match, err
}
