#!/usr/bin/env bash
# bench/setup.sh — sourced by bench/proxy.sh and bench/cpu.sh: builds the benchmark's
# programs, makes the upstream's test PKI, and starts every path on loopback (see proxy.sh's
# header for the list and the ports), then checks that each answers. It leaves $W (the work
# directory), $GP_PID (the gatepass instance with the TLS gateways) and $PIDS set, and an EXIT
# trap that stops everything.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=$(mktemp -d /tmp/gatepass-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$W/up/nginx.pid" ] && kill "$(cat "$W/up/nginx.pid")" 2>/dev/null || true
  [ -f "$W/rp/nginx.pid" ] && kill "$(cat "$W/rp/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "# building" >&2
(cd "$ROOT" && go build -o "$W/gatepass-bench" ./bench/gatepass-bench && go build -o "$W/tlsload" ./bench/tlsload &&
  go build -o "$W/gobound" ./bench/gobound && cd bench/evloop && go build -o "$W/evloop" .)

echo "# upstream test PKI" >&2
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=bench upstream CA" \
  -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$W/srv.key" -out "$W/srv.csr" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n" > "$W/ext.cnf"
openssl x509 -req -in "$W/srv.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial -days 1 \
  -extfile "$W/ext.cnf" -out "$W/srv.pem" 2>/dev/null

mkdir -p "$W/up" "$W/rp"
cat > "$W/up/nginx.conf" <<NGX
worker_processes 1;
pid $W/up/nginx.pid;
error_log $W/up/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $W/up; proxy_temp_path $W/up; fastcgi_temp_path $W/up; uwsgi_temp_path $W/up; scgi_temp_path $W/up;
  server {
    listen 127.0.0.1:18080; listen [::1]:18080;
    listen 127.0.0.1:18443 ssl; listen [::1]:18443 ssl;
    ssl_certificate $W/srv.pem; ssl_certificate_key $W/srv.key;
    location / { return 200 "hello\n"; }
  }
}
NGX
cat > "$W/rp/nginx.conf" <<NGX
worker_processes auto;
pid $W/rp/nginx.pid;
error_log $W/rp/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $W/rp; proxy_temp_path $W/rp; fastcgi_temp_path $W/rp; uwsgi_temp_path $W/rp; scgi_temp_path $W/rp;
  upstream up { server 127.0.0.1:18080; keepalive 64; }
  server {
    listen 127.0.0.1:18081;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer bench-token";
    }
  }
}
NGX
cat > "$W/tinyproxy.conf" <<TP
Port 18082
Listen 127.0.0.1
Timeout 600
MaxClients 256
Allow 127.0.0.1
AddHeader "Authorization" "Bearer bench-token"
DisableViaHeader Yes
LogLevel Critical
LogFile "$W/tinyproxy.log"
PidFile "$W/tinyproxy.pid"
TP
cat > "$W/forward.lua" <<'LUA'
-- Send absolute-form requests (a forward proxy's input) to the proxy wrk connects to.
init = function(args)
  wrk.path = "http://127.0.0.1:18080/"
  wrk.headers["Host"] = "127.0.0.1:18080"
end
LUA

nginx -c "$W/up/nginx.conf" -e "$W/up/error.log"
nginx -c "$W/rp/nginx.conf" -e "$W/rp/error.log"
tinyproxy -d -c "$W/tinyproxy.conf" & PIDS+=($!)
# Streaming upstreams (bodies read to the end, 1 GiB sent): plain and TLS.
"$W/gatepass-bench" -mode sink -listen 127.0.0.1:18090 & PIDS+=($!)
"$W/gatepass-bench" -mode sink -listen 127.0.0.1:18444 -cert "$W/srv.pem" -key "$W/srv.key" & PIDS+=($!)
"$W/gatepass-bench" -listen 127.0.0.1:18787 -plain-gateway 127.0.0.1:18080,127.0.0.1:18090 -tls-gateway localhost:18443,localhost:18444 \
  -upstream-ca "$W/ca.pem" -ca-out "$W/gatepass-ca.pem" -v 2>"$W/gatepass.log" & PIDS+=($!); GP_PID=$!
"$W/gatepass-bench" -listen 127.0.0.1:18789 -plain-gateway 127.0.0.1:18080 -upstream-ca "$W/ca.pem" & PIDS+=($!)
"$W/gatepass-bench" -mode goproxy -listen 127.0.0.1:18788 -upstream-ca "$W/ca.pem" & PIDS+=($!)
"$W/gobound" -listen 127.0.0.1:18798 -parse raw & PIDS+=($!)
"$W/gobound" -listen 127.0.0.1:18799 -parse std & PIDS+=($!)
"$W/gobound" -listen 127.0.0.1:18796 -upstream 127.0.0.1:18443 -cert "$W/srv.pem" -key "$W/srv.key" -upstream-ca "$W/ca.pem" & PIDS+=($!)
"$W/gobound" -listen 127.0.0.1:18797 -upstream 127.0.0.1:18443 -cert "$W/srv.pem" -key "$W/srv.key" -upstream-ca "$W/ca.pem" -parse std & PIDS+=($!)
"$W/evloop" -listen 127.0.0.1:18795 -loops 2 2>"$W/evloop.log" & PIDS+=($!)
sleep 1

# Sanity: each path returns the body and (for proxies) the upstream got the header.
curl -sf http://127.0.0.1:18080/ >/dev/null
curl -sf http://127.0.0.1:18081/ >/dev/null
curl -sf -x http://127.0.0.1:18082 http://127.0.0.1:18080/ >/dev/null
curl -sf -x http://127.0.0.1:18787 http://127.0.0.1:18080/ >/dev/null
curl -sf -x http://127.0.0.1:18789 http://127.0.0.1:18080/ >/dev/null
curl -sf -x http://127.0.0.1:18788 http://127.0.0.1:18080/ >/dev/null
curl -sf -x http://127.0.0.1:18798 http://127.0.0.1:18080/ >/dev/null
curl -sf -x http://127.0.0.1:18799 http://127.0.0.1:18080/ >/dev/null
curl -sf -x http://127.0.0.1:18795 http://127.0.0.1:18080/ >/dev/null
curl -sf --cacert "$W/gatepass-ca.pem" -x http://127.0.0.1:18787 https://localhost:18443/ >/dev/null
cat "$W/ca.pem" "$W/gatepass-ca.pem" > "$W/trust.pem"
