#!/usr/bin/env bash
# bench/app.sh [SECONDS]
#
# Idle cost of the desktop app (issue 4, "Measure"): RSS and CPU of
# `gatepass gui --demo` with the demo profile signed in and the proxy on,
# beside two empty Fyne windows of the same size, all sampled over the same
# SECONDS (default 60) in the same run: "blank" draws nothing at all, "hello"
# is Fyne's hello-world (one label), the ≈ 135 MB window issue 4 quotes; plus the time from start to the tray
# item registering with a StatusNotifierWatcher.
#
# Needs a desktop session (Xvfb + D-Bus): scripts/with-desktop bench/app.sh
# Prints a Markdown table, then where each process's RSS lies (from
# /proc/PID/smaps): libLLVM (Mesa llvmpipe's shader compiler, code pages),
# the C malloc heap, anonymous memory (the Go heap plus large C
# allocations), the executable's own pages, and the rest.
#
# gatepass is built with -tags no_emoji, as scripts/run builds it; BENCH_TAGS
# overrides the tags (BENCH_TAGS= for a stock build). The empty window is
# always a stock Fyne build. Environment such as LP_NUM_THREADS
# reaches both processes alike.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
[[ -n "${DISPLAY:-}" ]] || { echo "bench/app.sh: DISPLAY is not set; run under scripts/with-desktop" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

cd "$root"
go build -tags "${BENCH_TAGS-no_emoji}" -o "$work/gatepass" ./cmd/gatepass
go build -o "$work/snwatcher" docs/snwatcher/main.go
go build -o "$work/empty" docs/emptywindow/main.go

"$work/snwatcher" >"$work/watcher.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q ready "$work/watcher.log" && break; sleep 0.05; done

# Scripted browser: answer the demo consent page with Allow.
cat >"$work/browser" <<'SH'
#!/usr/bin/env bash
set -euo pipefail
url=${!#}
jar=$(mktemp)
page=$(curl -fsSL -c "$jar" -b "$jar" -w '\n%{url_effective}' "$url")
final=${page##*$'\n'}
action=$(grep -o '<form[^>]*action="[^"]*"' <<<"$page" | sed 's/.*action="\([^"]*\)".*/\1/; s/&amp;/\&/g')
rid=$(grep -o 'name="request_id" value="[^"]*"' <<<"$page" | sed 's/.*value="\([^"]*\)".*/\1/')
case $action in
http*) ;;
/*) action=$(sed -E 's#^(https?://[^/]+).*#\1#' <<<"$final")$action ;;
esac
curl -fsSL -c "$jar" -b "$jar" --data-urlencode "request_id=$rid" --data "action=allow" "$action" >/dev/null &
SH
chmod +x "$work/browser"

now_ms() { date +%s%3N; }

export XDG_CONFIG_HOME="$work/config"
t0=$(now_ms)
"$work/gatepass" gui --demo --browser-command "$work/browser" >"$work/gui.log" 2>&1 &
app=$!
pids+=("$app")
for _ in $(seq 300); do grep -q registered "$work/watcher.log" && break; sleep 0.05; done
treg=$(sed -n 's/.* at \([0-9]*\)$/\1/p' "$work/watcher.log" | head -1)
[[ -n "$treg" ]] || { cat "$work/gui.log" >&2; echo "bench: tray never registered" >&2; exit 1; }
tray_ms=$((treg - t0))

wid=""
for _ in $(seq 300); do
	wid=$(xdotool search --onlyvisible --name '^gatepass$' 2>/dev/null | head -1 || true)
	[[ -n "$wid" ]] && break
	sleep 0.1
done
[[ -n "$wid" ]] || { echo "bench: no gatepass window" >&2; exit 1; }
sleep 1
import -window "$wid" "$work/before.png"
read -r bx by < <(convert "$work/before.png" -crop 300x100000+0+0 +repage \
	-fill black +opaque '#296FF6' -fill white -opaque '#296FF6' txt:- |
	awk -F'[,:]' '/#FFFFFF/ { x += $1; y += $2; n++ } END { if (n > 50) printf "%d %d\n", x / n, y / n }')
xdotool mousemove --window "$wid" "$bx" "$by" click 1
cfg=$(sed -n 's/.*config \(.*\.toml\).*/\1/p' "$work/gui.log" | head -1)
for _ in $(seq 150); do
	"$work/gatepass" --config "$cfg" status --json 2>/dev/null | grep -q '"signed-in"' && break
	sleep 0.2
done
"$work/gatepass" --config "$cfg" status --json 2>/dev/null | grep -q '"signed-in"' || { echo "bench: not signed in" >&2; exit 1; }

"$work/empty" >/dev/null 2>&1 &
empty=$!
pids+=("$empty")
"$work/empty" "Hello Fyne!" >/dev/null 2>&1 &
hello=$!
pids+=("$hello")
sleep 5 # both settle

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

declare -A c0 rmax rsum
n=0
for p in "$app" "$empty" "$hello"; do c0[$p]=$(cpu_ticks "$p"); rmax[$p]=0; rsum[$p]=0; done
for ((i = 0; i < secs; i += 5)); do
	for p in "$app" "$empty" "$hello"; do
		r=$(rss_kb "$p")
		rsum[$p]=$((rsum[$p] + r))
		((r > rmax[$p])) && rmax[$p]=$r
	done
	n=$((n + 1))
	sleep 5
done

row() { # name pid
	local p=$2 dt
	dt=$(($(cpu_ticks "$p") - c0[$p]))
	awk -v name="$1" -v avg="$((rsum[$p] / n))" -v max="${rmax[$p]}" -v dt="$dt" -v hz="$hz" -v secs="$secs" \
		'BEGIN { printf "| %s | %.1f | %.1f | %.2f%% |\n", name, avg / 1024, max / 1024, 100 * dt / hz / secs }'
}
echo "Idle over ${secs}s (Xvfb, software GL; $(nproc) cores):"
echo
echo "| process | RSS avg (MB) | RSS max (MB) | CPU |"
echo "|---|---|---|---|"
row "gatepass gui (demo profile signed in, proxy on), -tags ${BENCH_TAGS-no_emoji}" "$app"
row "empty Fyne window, blank (draws nothing)" "$empty"
row "empty Fyne window, hello (one label: \"Hello Fyne!\")" "$hello"
echo
ratio() { awk -v a="${rsum[$1]}" -v b="${rsum[$2]}" 'BEGIN { printf "%.2f", a / b }'; }
echo "RSS ratio (averages): $(ratio "$app" "$hello")x the hello window, $(ratio "$app" "$empty")x the blank window"
echo
echo "Start to tray item registered: ${tray_ms} ms"

# breakdown NAME PID: one row of RSS by kind of mapping, in MB.
breakdown() {
	awk -v name="$1" -v exe="$(readlink "/proc/$2/exe")" '
		/^[0-9a-f]+-[0-9a-f]+ / { path = $6; next }
		/^Rss:/ {
			k = "other"
			if (path ~ /libLLVM/) k = "llvm"
			else if (path == "[heap]") k = "heap"
			else if (path == "") k = "anon"
			else if (path == exe) k = "exe"
			rss[k] += $2
		}
		END { printf "| %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n", name, rss["llvm"] / 1024, rss["heap"] / 1024, rss["anon"] / 1024, rss["exe"] / 1024, rss["other"] / 1024 }
	' "/proc/$2/smaps"
}
echo
echo "RSS at the end by mapping (MB):"
echo
echo "| process | libLLVM | C heap ([heap]) | anonymous (Go heap, large C allocations) | executable | other |"
echo "|---|---|---|---|---|---|"
breakdown "gatepass gui (-tags ${BENCH_TAGS-no_emoji})" "$app"
breakdown "empty Fyne window, blank" "$empty"
breakdown "empty Fyne window, hello" "$hello"
