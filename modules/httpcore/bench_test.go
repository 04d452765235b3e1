package httpcore_test

import (
	"testing"

	"github.com/spindle-server/spindle/internal/testserver"
)

const benchConf = `
http {
  server {
    listen = ["127.0.0.1:80"]
    keepalive_requests = 1000000000
    location "= /hello" { return = { code = 200, body = "hello world\n" } }
    location "= /moon" { echo = "moon" }
    location "= /earth" { echo = "earth" }
    location "= /multi" { echo_location_async = ["/moon", "/earth"] }
  }
}
`

func BenchmarkHello(b *testing.B) {
	testserver.BenchPath(b, benchConf, "GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
}

func BenchmarkMulti(b *testing.B) {
	testserver.BenchPath(b, benchConf, "GET /multi HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
}
