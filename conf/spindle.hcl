# spindle's default configuration: serves http://127.0.0.1:8080/.
worker_processes = "auto"
error_log        = "logs/error.log"
pid              = "logs/spindle.pid"

events {
  worker_connections = 1024
}

http {
  server {
    listen      = ["127.0.0.1:8080"]
    server_name = ["localhost"]

    location "= /hello" {
      return = { code = 200, body = "hello world\n" }
    }

    location "= /lua" {
      content_by_lua = <<-LUA
        ngx.say("Hello, ", ngx.var.arg_who or "Lua", "!")
      LUA
    }

    location "/" {
      root  = "html"
      index = ["index.html"]
    }
  }
}
