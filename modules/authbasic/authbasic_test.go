package authbasic_test

import (
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/access"
	"github.com/spindle-server/spindle/modules/authbasic"
	_ "github.com/spindle-server/spindle/modules/echo"
)

// htpasswd runs Apache's htpasswd (apache2-utils, which scripts/test.sh installs) to
// hash password with the scheme flag (-B bcrypt, -m apr1, -s SHA, -p plain, -d crypt)
// and returns the "user:hash" line.
func htpasswd(t *testing.T, flag, user, password string) string {
	t.Helper()
	out, err := exec.Command("htpasswd", "-nb"+flag, user, password).Output()
	if err != nil {
		t.Fatalf("htpasswd -nb%s: %v (apache2-utils is needed)", flag, err)
	}
	return strings.TrimSpace(string(out))
}

func TestVerifyHtpasswdSchemes(t *testing.T) {
	for _, flag := range []string{"B", "m", "s"} {
		line := htpasswd(t, flag, "u", "s3cret:with colon")
		_, hash, _ := strings.Cut(line, ":")
		if ok, err := authbasic.Verify(hash, "s3cret:with colon"); !ok || err != nil {
			t.Errorf("-%s %s: right password refused: %v", flag, hash, err)
		}
		if ok, err := authbasic.Verify(hash, "s3cret:with colon!"); ok || err != nil {
			t.Errorf("-%s %s: wrong password accepted (err %v)", flag, hash, err)
		}
	}
	// FreeBSD MD5-crypt, apr1's algorithm under the magic "$1$": what
	// `openssl passwd -1 -salt abcdefgh hello` printed (OpenSSL 3.0).
	if ok, _ := authbasic.Verify("$1$abcdefgh$rwnEbRiN0agqVgZBovWNQ/", "hello"); !ok {
		t.Errorf("$1$ refused")
	}
	if ok, _ := authbasic.Verify("$1$abcdefgh$rwnEbRiN0agqVgZBovWNQ/", "hellO"); ok {
		t.Errorf("$1$ accepted a wrong password")
	}
	// SHA-crypt, as glibc's crypt(3) (Python's crypt module) and openssl passwd -5/-6
	// wrote these, default and custom rounds, a salt cut to 16 characters.
	for _, c := range [][2]string{
		{"Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
		{"", "$5$saltstring$FdNfA4gXqvCeO6iZs7G/.wwwoywYZqo0l1pwmfWaBA7"},
		{"a very much longer text to encrypt.  This one even stretches over morethan one line.", "$5$saltstring$GyTEZtFuSijnDwgZAdeQeFYSkAzF3f3QpZGhkJUrWWD"},
		{"Hello world!", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"", "$6$saltstring$kyGrqt6gmjAdtFLPrflEFifSYLCWWq1pyx95SvqinLDy2UHmj0sTF0MSLMwxPFZc3tu5kQckI8fks0zOPda3n1"},
		{"Hello world!", "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"},
		{"a very much longer text to encrypt.  This one even stretches over morethan one line.", "$5$rounds=10000$saltstringsaltst$vtDfoBYAWGilWl5IHXVp/LaeP.43tehWv5zLhKQm8t5"},
		{"Hello world!", "$6$rounds=1400$anotherlongsalts$5FGyu8c4BZDX4wJgs0Un26YOw2XibT5eTkHF1I1aP3QqStoJI9BHD2YPJYsAjEePVGUyBjdZxcNqMWlrrbIOC."},
		{"", "$6$rounds=5000$toolongsaltstrin$mEk6h65w6YJghTxPobcTXEXio3kCcFxikGjKlfCGsts65XqUQQjutrYFb5zITX.AKQuKz9de1j8Bl0FT0KT5L/"},
		{"Hello", "$5$saltstring$jfZe1.O5rA9aUKHLYLEqMjNCNYEqmZMJ.KAMmcgZPz5"},
		{"Hello", "$6$saltstring$aQzKv7HhksN4CNT5HySRdxOEHxZvlWWP2je/lOgbrHx5iLYj3NJfVnC287n/dwkODYWL1.LZUdO9vX84fkCna/"},
	} {
		if ok, err := authbasic.Verify(c[1], c[0]); !ok || err != nil {
			t.Errorf("%s refused %q: %v", c[1], c[0], err)
		}
		if ok, _ := authbasic.Verify(c[1], c[0]+"x"); ok {
			t.Errorf("%s accepted %q", c[1], c[0]+"x")
		}
	}
	// {SSHA}: base64(sha1(password+salt)+salt); "{SSHA}" of "pw" with salt "salt".
	if ok, err := authbasic.Verify("{SSHA}K/qCHdTzr1rftXNEV4Ob7XsySBlzYWx0", "pw"); !ok || err != nil {
		t.Errorf("{SSHA} refused: %v", err)
	}
	if ok, _ := authbasic.Verify("{PLAIN}pw", "pw"); !ok {
		t.Errorf("{PLAIN} refused")
	}
	des := htpasswd(t, "d", "u", "pw")
	_, hash, _ := strings.Cut(des, ":")
	if _, err := authbasic.Verify(hash, "pw"); err == nil {
		t.Errorf("DES crypt %s: expected an unsupported-scheme error", hash)
	}
}

func basic(user, password string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// The configuration of nginx's documentation, with satisfy and an inner location that
// turns authentication off.
const authConf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    location "/" {
      auth_basic           = "closed site"
      auth_basic_user_file = "conf/htpasswd"
      echo                 = "user=${remote_user}"
      location "/public/" {
        auth_basic = "off"
        echo       = "public user=${remote_user}"
      }
    }
    location "/any/" {
      satisfy              = "any"
      allow                = "192.168.1.0/32"
      deny                 = "all"
      auth_basic           = "closed site"
      auth_basic_user_file = "conf/htpasswd"
      echo                 = "any ok"
    }
    location "/local/" {
      satisfy              = "any"
      allow                = "127.0.0.1"
      deny                 = "all"
      auth_basic           = "closed site"
      auth_basic_user_file = "conf/htpasswd"
      echo                 = "local ok"
    }
    location "/denied/" {
      deny                 = "all"
      auth_basic           = "closed site"
      auth_basic_user_file = "conf/htpasswd"
      echo                 = "never"
    }
    location "/missing/" {
      auth_basic           = "realm of ${host}"
      auth_basic_user_file = "conf/${arg.file}"
      echo                 = "found ${arg.file}"
    }
  }
}
`

func userFile(t *testing.T) string {
	return strings.Join([]string{
		"# a comment line",
		htpasswd(t, "B", "carol", "bcrypt-pw"),
		htpasswd(t, "m", "alice", "apr1-pw"),
		htpasswd(t, "s", "bob", "sha-pw"),
		htpasswd(t, "d", "dave", "des-pw"),
		"erin:{PLAIN}plain-pw:a comment field",
		"",
	}, "\n")
}

func TestAuthBasic(t *testing.T) {
	s := testserver.Start(t, authConf, testserver.WithFiles(map[string]string{"conf/htpasswd": userFile(t)}))

	r := s.Get("/x")
	if r.Status != 401 || r.Header.Get("WWW-Authenticate") != `Basic realm="closed site"` {
		t.Fatalf("no credentials: %d %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	for _, c := range []struct{ user, pw string }{
		{"carol", "bcrypt-pw"}, {"alice", "apr1-pw"}, {"bob", "sha-pw"}, {"erin", "plain-pw"},
	} {
		if r := s.Get("/x", basic(c.user, c.pw)); r.Status != 200 || r.Body != "user="+c.user+"\n" {
			t.Errorf("%s: %d %q", c.user, r.Status, r.Body)
		}
		if r := s.Get("/x", basic(c.user, c.pw+"x")); r.Status != 401 || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s with a wrong password: %d", c.user, r.Status)
		}
	}
	if r := s.Get("/x", basic("nobody", "pw")); r.Status != 401 {
		t.Errorf("unknown user: %d", r.Status)
	}
	// A "#" line is a comment, not the user "# a comment line".
	if r := s.Get("/x", basic("# a comment line", "")); r.Status != 401 {
		t.Errorf("comment line as a user: %d", r.Status)
	}
	// DES crypt needs the system's crypt(3): refused loudly, not silently.
	if r := s.Get("/x", basic("dave", "des-pw")); r.Status != 500 {
		t.Errorf("DES entry: %d", r.Status)
	}
	if r := s.Get("/public/x"); r.Status != 200 || r.Body != "public user=\n" {
		t.Errorf("auth_basic off: %d %q", r.Status, r.Body)
	}
	// $remote_user is the user the client sent, checked or not.
	if r := s.Get("/public/x", basic("alice", "whatever")); r.Body != "public user=alice\n" {
		t.Errorf("remote_user where auth is off: %q", r.Body)
	}

	// satisfy any: the address rule denies, so the password decides.
	if r := s.Get("/any/x"); r.Status != 401 {
		t.Errorf("satisfy any without credentials: %d", r.Status)
	}
	if r := s.Get("/any/x", basic("alice", "apr1-pw")); r.Status != 200 || r.Body != "any ok\n" {
		t.Errorf("satisfy any with a password: %d %q", r.Status, r.Body)
	}
	// satisfy any: the address grants, no password needed.
	if r := s.Get("/local/x"); r.Status != 200 {
		t.Errorf("satisfy any from an allowed address: %d", r.Status)
	}
	// satisfy all: deny runs first, no challenge.
	if r := s.Get("/denied/x", basic("alice", "apr1-pw")); r.Status != 403 || r.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("denied address: %d %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}

	// Variables in the realm and the file name; a missing file is 403, as nginx.
	r = s.Get("/missing/x?file=htpasswd", "Host: example.com")
	if r.Status != 401 || r.Header.Get("WWW-Authenticate") != `Basic realm="realm of example.com"` {
		t.Errorf("realm template: %d %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	if r := s.Get("/missing/x?file=htpasswd", basic("bob", "sha-pw")); r.Status != 200 || r.Body != "found htpasswd\n" {
		t.Errorf("file template: %d %q", r.Status, r.Body)
	}
	if r := s.Get("/missing/x?file=nothere", basic("bob", "sha-pw")); r.Status != 403 {
		t.Errorf("missing file: %d", r.Status)
	}

	log := s.ErrorLog()
	for _, want := range []string{
		"no user/password was provided for basic authentication",
		`user "alice": password mismatch`,
		`user "nobody" was not found in "` + filepath.Join(s.Prefix, "conf/htpasswd") + `"`,
		"unsupported password scheme",
		"nothere",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("error log lacks %q:\n%s", want, log)
		}
	}
}

// The file is read per request, as nginx reads it: a user added is let in at once.
func TestAuthBasicFileChangesApplyWithoutReload(t *testing.T) {
	s := testserver.Start(t, authConf, testserver.WithFiles(map[string]string{"conf/htpasswd": htpasswd(t, "m", "alice", "one") + "\n"}))
	if r := s.Get("/x", basic("frank", "two")); r.Status != 401 {
		t.Fatalf("before: %d", r.Status)
	}
	line := htpasswd(t, "B", "frank", "two")
	f, err := os.OpenFile(filepath.Join(s.Prefix, "conf/htpasswd"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(line + "\n")
	f.Close()
	if r := s.Get("/x", basic("frank", "two")); r.Status != 200 {
		t.Errorf("after: %d", r.Status)
	}
}

// The spindle binary, its workers reading the file the way a deployment does.
func TestAuthBasicE2E(t *testing.T) {
	config := strings.Replace(authConf, `"127.0.0.1:0"`, `"127.0.0.1:{{PORT}}"`, 1)
	inst := e2e.Start(t, config, &e2e.Options{Files: map[string]string{"conf/htpasswd": userFile(t)}})
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path, user, pw string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://"+inst.Addr()+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	resp, err := get("/x", "", "")
	if err != nil || resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="closed site"` {
		t.Fatalf("no credentials: %v %v", resp, err)
	}
	if resp, err := get("/x", "carol", "bcrypt-pw"); err != nil || resp.StatusCode != 200 {
		t.Errorf("bcrypt user: %v %v", resp, err)
	}
	if resp, err := get("/x", "alice", "nope"); err != nil || resp.StatusCode != 401 {
		t.Errorf("wrong password: %v %v", resp, err)
	}
	if !e2e.WaitFor(5*time.Second, func() bool { return strings.Contains(inst.ErrorLog(), `user "alice": password mismatch`) }) {
		t.Errorf("error log:\n%s", inst.ErrorLog())
	}
}
