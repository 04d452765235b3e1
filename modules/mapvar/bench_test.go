package mapvar_test

import (
	"testing"

	"github.com/spindle-server/spindle/internal/testserver"
)

// The cost a map adds to a request: the same echo with a plain variable and with a
// host-name map of exact names, wildcards and a regex (keepalive_requests above the
// iterations: the fake connection feeds them all on one connection).
func BenchmarkMapRequest(b *testing.B) {
	const head = `
http {
  map "name" {
    source    = http.host
    hostnames = true
    default   = "0"
    values = {
      "example.com" = "1", "*.example.com" = "1", "example.org" = "2", "*.example.org" = "2"
      ".example.net" = "3", "wap.*" = "4", "~^api\\d+\\.test$" = "5"
    }
  }
  server {
    listen             = ["127.0.0.1:8080"]
    keepalive_requests = 100000000
`
	req := "GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n"
	b.Run("plain", func(b *testing.B) {
		testserver.BenchPath(b, head+`location "/" { echo = "${host}" }
}
}
`, req)
	})
	b.Run("map", func(b *testing.B) {
		testserver.BenchPath(b, head+`location "/" { echo = "${name}" }
}
}
`, req)
	})
	b.Run("map-regex", func(b *testing.B) {
		testserver.BenchPath(b, head+`location "/" { echo = "${name}" }
}
}
`, "GET / HTTP/1.1\r\nHost: api7.test\r\n\r\n")
	})
}
