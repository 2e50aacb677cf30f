#!/usr/bin/env bash
# bench/cpu.sh — where the machine's CPU goes, per request, on each path of bench/proxy.sh:
# the proxy's processes, the upstream (nginx), the client (wrk or tlsload), each with the
# kernel's work done in its name (a loopback write runs the receiver's TCP too, in softirq,
# which Linux charges to the process it interrupts), anything else, time no CPU had anything
# to run (idle) and time the hypervisor gave to other guests (steal). Two cores run all of it,
# so a path's rate is what its sum allows: this says which part of a slower path is the
# proxy's own work and which part follows from it.
#
# Counters: /proc/stat for the machine, /proc/PID/stat (utime+stime) for the proxy and the
# upstream, bash's `time` for the client. USER_HZ ticks are 10 ms, so a run of DUR seconds at
# tens of thousands of requests a second resolves about 0.1 µs a request.
# With perf on PATH a second, shorter pass counts the proxy's system calls and context
# switches per request (perf stat -p; tracing slows that pass, so its rates are not compared).
#
# Usage: bench/cpu.sh [duration-seconds-per-run] [rounds]   (needs what proxy.sh needs)
set -euo pipefail
DUR=${1:-8}
ROUNDS=${2:-2}
CONNS=32
source "$(dirname "$0")/setup.sh"

# pids_on PORT: the processes listening on a loopback port (nginx: master and workers).
pids_on() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | tr '\n' ' '; }
# ticks PID...: their CPU time so far (utime + stime), in USER_HZ ticks.
ticks() { local s=0 p; for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$s"; }
# machine: total, idle (+iowait) and steal ticks so far.
machine() { awk '$1 == "cpu" { print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6, $9; exit }' /proc/stat; }
HZ=$(getconf CLK_TCK)
UP=$(pids_on 18080)

# account NAME PROXY-PORT CLIENT-COMMAND...: one run; appends a row of µs a request to $W/cpu.
account() {
  local name=$1 port=$2; shift 2
  local pp=""; [ "$port" != - ] && pp=$(pids_on "$port")
  "$@" 1 >/dev/null 2>&1 || true # warm-up
  local t0 i0 s0 u0 p0 t1 i1 s1 u1 p1 out client
  read -r t0 i0 s0 < <(machine); u0=$(ticks $UP); p0=$(ticks $pp)
  { out=$( { time "$@" "$DUR" 2>&1; } 2>&1 ); } || true
  read -r t1 i1 s1 < <(machine); u1=$(ticks $UP); p1=$(ticks $pp)
  client=$(echo "$out" | awk '/^cputime/ { print $2 + $3 }')
  local rps
  rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 } /rps=/ { sub(/.*rps=/, ""); print $1 + 0 }' | head -1)
  if [ -z "$rps" ] || [ -z "$client" ]; then
    echo "# $name: FAILED this round: $out" >&2
    return 0
  fi
  awk -v n="$name" -v rps="$rps" -v d="$DUR" -v hz="$HZ" -v c="$client" \
    -v T=$((t1 - t0)) -v I=$((i1 - i0)) -v S=$((s1 - s0)) -v U=$((u1 - u0)) -v P=$((p1 - p0)) 'BEGIN {
      r = rps * d; k = 1e6 / hz / r # µs a request per tick
      cl = c * 1e6 / r
      printf "%s %.0f %.1f %.1f %.1f %.1f %.1f %.1f %.1f\n", n, rps, P*k, U*k, cl, T*k - I*k - S*k - P*k - U*k - cl, I*k, S*k, T*k
    }' >> "$W/cpu"
  echo "# $name: $(tail -1 "$W/cpu")" >&2
}
TIMEFORMAT='cputime %U %S'
plain() { wrk -t2 -c"$CONNS" -d"$2s" ${3:+-s "$3"} "$1"; }
tls() { "$W/tlsload" -url https://localhost:18443/ -c "$CONNS" -d "$2s" -cacert "$W/trust.pem" ${1:+-proxy "$1"}; }
paths=(
  "direct - plain http://127.0.0.1:18080/"
  "nginx 18081 plain http://127.0.0.1:18081/"
  "gatepass 18787 plain http://127.0.0.1:18787/ $W/forward.lua"
  "gatepass-nolog 18789 plain http://127.0.0.1:18789/ $W/forward.lua"
  "go-bound-raw 18798 plain http://127.0.0.1:18798/ $W/forward.lua"
  "go-evloop-raw 18795 plain http://127.0.0.1:18795/ $W/forward.lua"
  "direct-tls - tls ''"
  "gatepass-mitm 18787 tls http://127.0.0.1:18787"
  "go-bound-mitm 18796 tls http://127.0.0.1:18796"
)
# run NAME PORT KIND TARGET [SCRIPT]: the client command with the duration last.
run() {
  local name=$1 port=$2 kind=$3 target=$4 script=${5:-}
  [ "$target" = "''" ] && target=""
  if [ "$kind" = plain ]; then
    account "$name" "$port" plainrun "$target" "$script"
  else
    account "$name" "$port" tlsrun "$target"
  fi
}
plainrun() { plain "$1" "${3}" "$2"; }  # TARGET SCRIPT DURATION
tlsrun() { tls "$1" "$2"; }             # PROXY DURATION
for r in $(seq "$ROUNDS"); do
  echo "# round $r/$ROUNDS (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  if (( r % 2 == 0 )); then
    for (( i=${#paths[@]}-1; i>=0; i-- )); do run ${paths[i]}; done
  else
    for p in "${paths[@]}"; do run $p; done
  fi
done

echo
echo "CPU per request in µs (median of $ROUNDS interleaved rounds of ${DUR}s, $CONNS connections; $(nproc) CPUs):"
echo
echo "| path | rps | proxy | upstream | client | other | idle | steal | all CPUs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for p in "${paths[@]}"; do
  set -- $p
  awk -v n="$1" '$1 == n' "$W/cpu" | sort -k2 -g | awk '{ a[NR] = $0 } END { if (NR) { split(a[int((NR+1)/2)], f, " ");
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9] } }'
done
echo
echo "(the row is the round with the median rps; 'all CPUs' is the machine's time, $(nproc) CPUs, divided by the requests;"
echo " 'other' is what is left: kernel threads and the paths not under load; within ±1 µs it is the counters' 10 ms ticks)"

command -v perf >/dev/null || exit 0
echo
echo "System calls and context switches of the proxy per request (perf stat -p, 4 s under load; tracing slows it):"
echo
for p in "${paths[@]}"; do
  set -- $p
  [ "$2" = - ] && continue
  pp=$(pids_on "$2" | tr ' ' ',' | sed 's/,$//')
  if [ "$3" = plain ]; then plain "$4" 6 "${5:-}" > "$W/load.out" 2>&1 & else tls "$4" 6 > "$W/load.out" 2>&1 & fi
  lp=$!
  sleep 1
  perf stat -x, -e 'syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep,context-switches' \
    -p "$pp" -- sleep 4 2> "$W/perf.out" || true
  wait "$lp" || true
  # The rate over the whole load run stands in for the traced 4 s.
  rps=$(awk '/Requests\/sec/ { print $2 } /rps=/ { sub(/.*rps=/, ""); print $1 + 0 }' "$W/load.out" | head -1)
  echo "- $1: $(awk -F, -v r="${rps:-0}" 'r > 0 && $1 + 0 > 0 { v = $1 / (r * 4); n = $3; sub(/syscalls:sys_enter_/, "", n); printf "%s %.2f, ", n, v }' "$W/perf.out" | sed 's/, $//')"
done
