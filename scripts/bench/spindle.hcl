# spindle side of the backend workloads of scripts/bench.sh, beside
# ../shared/anchors/nginx.conf (nginx + lua-nginx-module, one worker on CPU 0).
# Placeholders to substitute before use, as in the anchor: PORT, REDISPORT, MEMCPORT,
# and UPPORT, the port of the nginx that serves /hello as the proxy workload's
# upstream (the anchor's own nginx instance will do).
#
#   /redis        GET foo, pooled (nginx: lua-resty-redis with set_keepalive)
#   /redis_fast   GET foo through the Lua fast path, spindle.redis("redis_pool")
#                 (nginx: /redis, lua-resty-redis with set_keepalive)
#   /redis_short  GET foo on a new connection per request (nginx: red:close())
#   /memc         memcached get foo with upstream keepalive (nginx: capture of memc_raw)
#   /proxy        proxy_pass to nginx's /hello with upstream keepalive
#
# For /proxy the nginx side needs, in the anchor's http block:
#   upstream hello_pool { server 127.0.0.1:UPPORT; keepalive 64; }
# and in its server block:
#   location = /proxy { proxy_pass http://hello_pool/hello;
#                       proxy_http_version 1.1; proxy_set_header Connection ""; }
worker_processes    = 1
worker_cpu_affinity = ["1"]
error_log           = "stderr error"
events { worker_connections = 4096 }

http {
  upstream "redis_pool" {
    type         = "redis"
    servers      = ["127.0.0.1:REDISPORT"]
    keepalive    = 512
    read_timeout = "1s"
  }
  upstream "redis_short" {
    type         = "redis"
    servers      = ["127.0.0.1:REDISPORT"]
    keepalive    = 0
    read_timeout = "1s"
  }
  upstream "memc_pool" {
    type      = "memcached"
    servers   = ["127.0.0.1:MEMCPORT"]
    keepalive = 512
  }
  upstream "hello_pool" {
    servers   = ["127.0.0.1:UPPORT"]
    keepalive = 64
  }

  server {
    listen = ["127.0.0.1:PORT backlog=4096"]

    location "= /redis" {
      redis_pass  = "redis_pool"
      redis_query = ["get", "foo"]
      redis_reply = "value"
    }
    location "= /redis_fast" {
      content_by_lua = "ngx.say(spindle.redis(\"redis_pool\"):get(\"foo\"))"
    }
    location "= /redis_short" {
      redis_pass  = "redis_short"
      redis_query = ["get", "foo"]
      redis_reply = "value"
    }
    location "= /memc" {
      memc_cmd  = "get"
      memc_key  = "foo"
      memc_pass = "memc_pool"
    }
    location "= /proxy" {
      proxy_pass = "http://hello_pool/hello"
    }
  }
}
