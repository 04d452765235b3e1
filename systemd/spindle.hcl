# /etc/spindle/spindle.hcl — the configuration scripts/install.sh installs; relative
# paths are relative to the prefix /usr/share/spindle.
worker_processes        = "auto"
worker_cpu_affinity     = "auto"
worker_shutdown_timeout = "30s"
pid                     = "/run/spindle/spindle.pid"
error_log               = "/var/log/spindle/error.log"

events {
  worker_connections = 10240
}

http {
  server {
    listen      = ["0.0.0.0:80"]
    server_name = ["localhost"]

    location "= /hello" {
      return = { code = 200, body = "hello world\n" }
    }

    location "/" {
      root  = "html"
      index = ["index.html"]
    }
  }
}
