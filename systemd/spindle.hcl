# /etc/spindle/spindle.hcl — the configuration scripts/install.sh installs; relative
# paths are relative to the prefix /usr/share/spindle, which the unit cannot write
# (ProtectSystem=strict). What spindle writes goes to the directories systemd makes for
# the unit and hands to the spindle user: logs to /var/log/spindle (LogsDirectory=),
# the pid file to /run/spindle (RuntimeDirectory=), anything kept on disk under
# /var/lib/spindle (StateDirectory=).
worker_processes        = "auto"
worker_cpu_affinity     = "auto"
worker_shutdown_timeout = "30s"
pid                     = "/run/spindle/spindle.pid"
# "stderr" sends the error log to the journal instead (journalctl -u spindle).
error_log               = "/var/log/spindle/error.log"

events {
  worker_connections = 10240
}

http {
  access_log = "/var/log/spindle/access.log"
  # Request bodies larger than client_body_buffer_size go to files here.
  client_body_temp_path = "/var/lib/spindle/client_body_temp"

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
