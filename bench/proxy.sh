#!/usr/bin/env bash
# bench/proxy.sh — one run, loopback, same upstream (nginx returning a 6-byte body):
#   direct            wrk -> upstream
#   nginx             wrk -> nginx reverse proxy (proxy_set_header Authorization, keep-alive upstream)
#   tinyproxy         wrk -> tinyproxy forward proxy (AddHeader Authorization)
#   goproxy (10 lines) wrk -> goproxy's own handler, tuned pool, header set in OnRequest
#   gatepass          wrk -> gatepass proxy, upstream is a plain_http gateway (token injected),
#                     logging one line per request at info level to a file, as `gatepass proxy` does
#   gatepass-nolog    the same proxy with per-request log lines filtered out (warn level)
#   go-bound-raw/std  bench/gobound: the least a Go proxy can do (no pool, no log, no policy),
#                     raw bytes or net/http's parsers: how far any Go proxy can get here
#   go-evloop-raw     bench/evloop: the same least work on gnet's epoll event loops (2 loops,
#                     a pool per loop) instead of goroutines: what an event loop could buy
# and HTTPS with keep-alive through a Go client (wrk cannot CONNECT):
#   direct TLS        client -> upstream:18443
#   gatepass MITM     client -CONNECT-> gatepass -> intercept, inject -> upstream:18443 (verified TLS)
#   go-bound MITM     the same through bench/gobound (raw bytes, one pinned upstream TLS conn per client)
# Paths run interleaved in ROUNDS rounds and the median of each is reported, so a burst
# of other load on the machine does not land on one path only.
# Finally (STREAM=1, the default) 1 GiB is uploaded and downloaded through gatepass on both
# paths and the proxy's peak RSS (VmHWM) is reported: streaming keeps it flat.
# Usage: bench/proxy.sh [duration-seconds-per-run] [rounds]   (needs nginx, tinyproxy, wrk, openssl, go, curl)
set -euo pipefail
DUR=${1:-10}
ROUNDS=${2:-3}
CONNS=32
source "$(dirname "$0")/setup.sh"

# to_ms VALUE-WITH-UNIT -> milliseconds
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v); print v+0} else if (v ~ /s$/) {sub(/s/,"",v); print v*1000} else print v }'; }

RES=$W/results; mkdir -p "$RES"
record() { # name rps p50 p99
  echo "$2" >> "$RES/$1.rps"; echo "$3" >> "$RES/$1.p50"; echo "$4" >> "$RES/$1.p99"
  echo "$ROUND $2 $4" >> "$RES/$1.rounds"  # for the per-round ratios
}
# cpu_times prints the machine's total and stolen CPU time so far (/proc/stat, in ticks):
# steal is time the hypervisor gave this VM's CPUs to someone else.
cpu_times() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9; exit }' /proc/stat; }
run_wrk() { # name url [script]
  local name=$1 url=$2 script=${3:-}
  local args=(-t2 -c"$CONNS" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  wrk "${args[@]}" -d1s "$url" >/dev/null 2>&1 || true   # warm-up
  local out
  if ! out=$(wrk "${args[@]}" -d"${DUR}s" "$url" 2>&1) || ! echo "$out" | grep -q "Requests/sec"; then
    echo "# $name: FAILED, no result this round: $out" >&2   # one path's failure does not end the run
    return 0
  fi
  echo "$out" | grep -qE "Non-2xx" && { echo "$name: non-2xx answers:" >&2; echo "$out" >&2; }
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
  record "$name" "$rps" "$p50" "$p99"
  echo "# $name: $rps rps, p50 $p50 ms, p99 $p99 ms$(echo "$out" | grep -o 'Socket errors.*' | sed 's/^/, /')" >&2
}
run_tls() { # name [proxy]
  local name=$1 proxy=${2:-}
  "$W/tlsload" -url https://localhost:18443/ -c "$CONNS" -d 1s -cacert "$W/trust.pem" ${proxy:+-proxy "$proxy"} >/dev/null 2>&1 || true
  local out
  if ! out=$("$W/tlsload" -url https://localhost:18443/ -c "$CONNS" -d "${DUR}s" -cacert "$W/trust.pem" ${proxy:+-proxy "$proxy"} 2>&1); then
    echo "# $name: FAILED, no result this round: $out" >&2
    return 0
  fi
  record "$name" "$(echo "$out" | sed -E 's/.*rps=([0-9.]+).*/\1/')" \
    "$(echo "$out" | sed -E 's/.*p50_ms=([0-9.]+).*/\1/')" "$(echo "$out" | sed -E 's/.*p99_ms=([0-9.]+).*/\1/')"
  echo "# $name: $out" >&2
}
median() { sort -g "$1" | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

for r in $(seq "$ROUNDS"); do
  ROUND=$r
  read -r t0 s0 < <(cpu_times)
  echo "# round $r/$ROUNDS (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  # Odd rounds run the paths in this order, even rounds in the reverse order, so no path
  # always runs right after the same neighbour (or first, on a machine still busy from the last).
  runs=(
    "run_wrk direct http://127.0.0.1:18080/"
    "run_wrk nginx http://127.0.0.1:18081/"
    "run_wrk gatepass http://127.0.0.1:18787/ $W/forward.lua"
    "run_wrk gatepass-nolog http://127.0.0.1:18789/ $W/forward.lua"
    "run_wrk goproxy-10-lines http://127.0.0.1:18788/ $W/forward.lua"
    "run_wrk tinyproxy http://127.0.0.1:18082/ $W/forward.lua"
    "run_wrk go-bound-raw http://127.0.0.1:18798/ $W/forward.lua"
    "run_wrk go-bound-std http://127.0.0.1:18799/ $W/forward.lua"
    "run_wrk go-evloop-raw http://127.0.0.1:18795/ $W/forward.lua"
    "run_tls direct-tls"
    "run_tls gatepass-mitm http://127.0.0.1:18787"
    "run_tls go-bound-mitm http://127.0.0.1:18796"
    "run_tls go-bound-std-mitm http://127.0.0.1:18797"
  )
  if (( r % 2 == 0 )); then
    for (( i=${#runs[@]}-1; i>=0; i-- )); do ${runs[i]}; done
  else
    for run in "${runs[@]}"; do $run; done
  fi
  read -r t1 s1 < <(cpu_times)
  awk -v r="$r" -v t="$((t1 - t0))" -v s="$((s1 - s0))" 'BEGIN { printf "%d %.1f\n", r, (t > 0 ? 100 * s / t : 0) }' >> "$RES/steal.rounds"
  sleep 2  # let tinyproxy's TIME_WAIT sockets and stragglers settle
done
declare -A RPS P50 P99
for f in "$RES"/*.rps; do
  n=$(basename "$f" .rps)
  RPS[$n]=$(median "$RES/$n.rps"); P50[$n]=$(median "$RES/$n.p50"); P99[$n]=$(median "$RES/$n.p99")
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || b == "" || b == 0) printf "n/a"; else printf "%.2f", a/b }'; }
echo
echo "Plain HTTP, wrk -t2 -c$CONNS -d${DUR}s, 6-byte body, median of $ROUNDS interleaved rounds, ratios to direct:"
echo
echo "| path | rps | rps / direct | p50 ms | p50 / direct | p99 ms | p99 / direct |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for n in direct nginx tinyproxy goproxy-10-lines gatepass gatepass-nolog go-bound-raw go-bound-std go-evloop-raw; do
  echo "| $n | ${RPS[$n]} | $(ratio "${RPS[$n]}" "${RPS[direct]}") | ${P50[$n]} | $(ratio "${P50[$n]}" "${P50[direct]}") | ${P99[$n]} | $(ratio "${P99[$n]}" "${P99[direct]}") |"
done
echo
echo "HTTPS with keep-alive, Go client (bench/tlsload) -c$CONNS -d${DUR}s, median of $ROUNDS rounds, ratios to direct TLS:"
echo
echo "| path | rps | rps / direct TLS | p50 ms | p99 ms |"
echo "|---|---:|---:|---:|---:|"
for n in direct-tls gatepass-mitm go-bound-mitm go-bound-std-mitm; do
  echo "| $n | ${RPS[$n]} | $(ratio "${RPS[$n]}" "${RPS[direct-tls]}") | ${P50[$n]} | ${P99[$n]} |"
done
echo
echo "gatepass vs nginx: rps $(ratio "${RPS[gatepass]}" "${RPS[nginx]}")x, p99 $(ratio "${P99[gatepass]}" "${P99[nginx]}")x; gatepass vs tinyproxy: rps $(ratio "${RPS[gatepass]}" "${RPS[tinyproxy]}")x"
for n in go-bound-raw go-bound-std go-evloop-raw; do
  echo "$n vs nginx: rps $(ratio "${RPS[$n]}" "${RPS[nginx]}")x, p99 $(ratio "${P99[$n]}" "${P99[nginx]}")x"
done
echo "gatepass vs go-bound-std: rps $(ratio "${RPS[gatepass]}" "${RPS[go-bound-std]}")x; gatepass-mitm vs go-bound-std-mitm: rps $(ratio "${RPS[gatepass-mitm]}" "${RPS[go-bound-std-mitm]}")x"
for n in direct nginx tinyproxy goproxy-10-lines gatepass gatepass-nolog go-bound-raw go-bound-std go-evloop-raw direct-tls gatepass-mitm go-bound-mitm go-bound-std-mitm; do
  got=$(cat "$RES/$n.rps" 2>/dev/null | wc -l)
  [ "$got" = "$ROUNDS" ] || echo "WARNING: $n has results from $got of $ROUNDS rounds (see the FAILED lines above)"
done
echo "gatepass wrote $(wc -l < "$W/gatepass.log") log lines; any token in them: $(grep -c bench-token "$W/gatepass.log" || true)"

# Per round, in the same round: a round in which the host took the CPUs away (steal) or
# something else ran shows up here, where a median hides it.
at() { awk -v r="$1" -v c="$3" '$1 == r { print $c }' "$RES/$2.rounds" 2>/dev/null; }
echo
echo "Per round (steal: CPU time the hypervisor gave to others, % of the round):"
echo
echo "| round | steal % | gatepass / nginx rps | gatepass / nginx p99 | go-evloop-raw / nginx rps | go-bound-raw / nginx rps | gatepass-mitm / direct TLS |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for r in $(seq "$ROUNDS"); do
  echo "| $r | $(awk -v r="$r" '$1 == r { print $2 }' "$RES/steal.rounds") | $(ratio "$(at "$r" gatepass 2)" "$(at "$r" nginx 2)") | $(ratio "$(at "$r" gatepass 3)" "$(at "$r" nginx 3)") | $(ratio "$(at "$r" go-evloop-raw 2)" "$(at "$r" nginx 2)") | $(ratio "$(at "$r" go-bound-raw 2)" "$(at "$r" nginx 2)") | $(ratio "$(at "$r" gatepass-mitm 2)" "$(at "$r" direct-tls 2)") |"
done

[ "${STREAM:-1}" = 1 ] || exit 0
set +o pipefail  # head gets SIGPIPE when curl is done with it
# 1 GiB up and down through gatepass, plain gateway and intercepted TLS, with the proxy's
# peak resident memory (VmHWM, /proc/PID/status) before and after.
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$GP_PID/status"; }
echo
echo "# streaming 1 GiB (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
before=$(hwm)
stream() { # name url-base [curl args...]
  local name=$1 base=$2; shift 2
  local up down
  up=$(head -c 1G /dev/zero | curl -sS --expect100-timeout 0 -H "Expect:" -x http://127.0.0.1:18787 "$@" -T - -o "$W/upload.out" -w '%{http_code} %{size_upload} %{speed_upload}' "$base/upload")
  local upbody; upbody=$(cat "$W/upload.out")
  down=$(curl -sS -x http://127.0.0.1:18787 "$@" -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' "$base/big?n=1073741824")
  echo "| $name | $(echo "$up" | awk '{printf "%s, %.0f MiB at %.0f MiB/s", $1, $2/1048576, $3/1048576}') (sink read $(echo "$upbody" | head -1) bytes) | $(echo "$down" | awk '{printf "%s, %.0f MiB at %.0f MiB/s", $1, $2/1048576, $3/1048576}') | $(hwm) |"
}
echo "1 GiB streamed through gatepass (upload chunked from curl -T -, download Content-Length), proxy peak RSS (VmHWM):"
echo
echo "| path | upload (status, size, speed) | download (status, size, speed) | VmHWM after, MiB |"
echo "|---|---|---|---:|"
echo "| (before streaming, after the benchmark) | | | $before |"
stream plain-gateway http://127.0.0.1:18090
stream intercepted-tls https://localhost:18444 --cacert "$W/trust.pem"
