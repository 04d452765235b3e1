package splitclients_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/splitclients"
)

// nginx's documented example, a second split that leaves a share unassigned, and the
// answers nginx 1.22 gave for them (its ngx_murmur_hash2 over the evaluated string).
const splitConf = `
http {
  split_clients "variant" {
    source = "${arg.k}AAA"
    values = {
      "0.5%"   = ".one"
      "2.0%"   = ".two"
      "10%"    = "ten"
      "33.33%" = "third"
      "*"      = "rest"
    }
  }
  split_clients "half" {
    source = arg.k
    values = { "50%" = "a", "49.99%" = "b" }
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/" { echo = "${variant} ${half}" }
  }
}
`

// nginxAnswers is what nginx answered for k=c1 ... k=c400, two letters per key: the
// variant (o .one, t .two, n ten, h third, r rest) and half (a, b, or - for none).
const nginxAnswers = "harbranarararahbrarahbrbrbhahahbrarbrbharbhbrahahbrahbrbrarbrarbrarahahbhbrarbranbratbrbrahbharbhahbrarbhahanahaharbnahbhahahbharbhbrbrbrbrarararahbhbhanbnbharaharararahaoahbhbrbrahbrbnarbhararbharbhbhbrbharbnbtahararaharahahaharanbrbrahbhahbrararbhahbrbhahararatbrararbrbrbharbhahbrbnbraharahahbharbhararahbhahbrarbrbrahaharbrbrananarahbhanarbranahbrarbrarbnaranbnbhbrbrahahahbnbhbrbrarbhararaharahanahbrahbrbraratarbnarahararararbhararbharatbnahbhbrbrahbrahbrahbhbrahahbhbhbrbhbhbhbrahahbrbhbharbrbhbrbhbrbhbrahbrahatbrbrbrahahanarbhanarahbhbrbrbharahararbrbrararbraranbrbnbnbranatbrbnbhbnbharbrbrarahbhararbrahbhbobhbnbrbrahbrarbrarahbhbhahahbrbhbrbrbnanbhahbrbhbrahbrahararbharbnararararbhbrbhbnaraharbhbhbrbhararbnahararbrarbrbnbnahbrbrbhbrbrbhaharbtbhbrararbhaharbrbrbrbrbhahbrbharbnanbrarbraha"

var variantCode = map[string]string{".one": "o", ".two": "t", "ten": "n", "third": "h", "rest": "r"}

func TestSplitClientsAsNginx(t *testing.T) {
	s := testserver.Start(t, splitConf)
	// Keys of every length mod 4 (the hash's tail cases), as nginx answered them.
	for k, want := range map[string]string{
		"": "rest a", "a": "third b", "ab": "rest a", "abc": "third a", "abcd": "rest a",
		"abcde": "third a", "127.0.0.1": "rest b", "192.168.1.77": "rest b", "10.0.0.1": "ten b",
		"2001:db8::1": "ten b", "user42": "rest b", "x": "third a",
	} {
		if r := s.Get("/?k=" + k); r.Body != want+"\n" {
			t.Errorf("k=%q: %q, nginx gave %q", k, r.Body, want)
		}
	}
	var got strings.Builder
	for i := 1; i <= 400; i++ {
		f := strings.Fields(s.Get(fmt.Sprintf("/?k=c%d", i)).Body)
		if len(f) == 1 {
			f = append(f, "-")
		}
		got.WriteString(variantCode[f[0]] + f[1])
	}
	if got.String() != nginxAnswers {
		g, w := got.String(), nginxAnswers
		for i := 0; i < len(w); i += 2 {
			if i+2 > len(g) || g[i:i+2] != w[i:i+2] {
				t.Fatalf("k=c%d: %q, nginx gave %q", i/2+1, g[i:min(i+2, len(g))], w[i:i+2])
			}
		}
	}
}

func TestSplitClientsConfigErrors(t *testing.T) {
	for _, c := range []struct{ conf, want string }{
		{"split_clients \"x\" {\nsource = uri\nvalues = { \"60%\" = \"a\", \"50%\" = \"b\" }\n}", "conf/spindle.hcl:4,25: percent total is greater than 100%"},
		{"split_clients \"x\" {\nsource = uri\nvalues = { \"*\" = \"a\", \"50%\" = \"b\" }\n}", "must be the last"},
		{"split_clients \"x\" {\nsource = uri\nvalues = { \"5.555%\" = \"a\" }\n}", "invalid percentage"},
		{"split_clients \"x\" {\nsource = uri\nvalues = { \"half\" = \"a\" }\n}", "invalid percentage"},
		{"split_clients \"x\" {\nvalues = { \"5%\" = \"a\" }\n}", "needs a source"},
	} {
		_, err := testserver.BuildString(t, "http {\n"+c.conf+"\n}\n", nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.conf, err, c.want)
		}
	}
}

func TestSplitClientsE2E(t *testing.T) {
	inst := e2e.Start(t, strings.Replace(splitConf, `"127.0.0.1:0"`, `"127.0.0.1:{{PORT}}"`, 1), nil)
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + inst.Addr() + "/?k=10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ten b\n" {
		t.Errorf("%q, nginx gave \"ten b\"", b)
	}
}
