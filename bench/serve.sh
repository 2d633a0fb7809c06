#!/usr/bin/env bash
# `ir-client serve` against a straight TLS pull: skopeo copies the 256 MiB
# test image (bench/gen_compare.py `content`: one 256 MiB layer and a
# 64 KiB one) from ir-server into a fresh OCI layout
#   - through `ir-client serve` on 127.0.0.1 (an emulated realm), which pulls
#     it over RA-TLS from `ir-server -t ra-tls`, and
#   - straight from `ir-server -t tls` (the same binary and root, its own
#     port) over TLS,
# side by side, ROUNDS times each, alternating; prints the median wall
# times and their ratio (goal: serve at least 0.9x the speed of TLS).
# Then, with `--cache`: a first pull fills the cache, a second pull of the
# same image must ask the upstream for manifests only (counted from the
# RA-TLS server's access log). The endpoint's peak RSS (VmHWM) while it
# streams is printed for both endpoints (goal: under 32 MiB), and the CPU
# time per pull of the endpoint and of both servers (less noisy than wall
# times on a shared machine: on 2 cores skopeo alone keeps both busy, so
# the endpoint's CPU time is what a pull through it costs more).
#
# Usage: bench/serve.sh            (release builds are made if missing)
# Env:   ROUNDS=5 BIG_MIB=256 IR_SERVER_BIN IR_CLIENT_BIN; TMPDIR (the work
#        directory, ~1.5 GiB at peak; TMPDIR=/dev/shm keeps it off the disk,
#        and skopeo's temporary files with it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
: "${ROUNDS:=5}" "${BIG_MIB:=256}"
SERVER=${IR_SERVER_BIN:-$root/target/release/ir-server}
CLIENT=${IR_CLIENT_BIN:-$root/target/release/ir-client}
[[ -x $SERVER && -x $CLIENT ]] || (cd "$root" && cargo build --release -p ir-server -p ir-client)
command -v skopeo >/dev/null || { echo "skopeo is needed" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # URL [CURL-ARGS]
  local url=$1
  shift
  for _ in $(seq 1 300); do curl -fs -o /dev/null "$@" "$url" && return 0; sleep 0.1; done
  echo "no answer from $url" >&2
  return 1
}

python3 "$here/gen_compare.py" content "$work/reg" --big-mib "$BIG_MIB" --extra-apps 0 >/dev/null
"$root/scripts/make-dev-cert.sh" "$work/certs" >/dev/null
"$CLIENT" emulated-realm --realm-keys "$work/realm" --application 'team/*' \
  --trust-anchors-out "$work/ta.json" --reference-values-out "$work/realm.json" >/dev/null 2>&1

tls_port=$(free_port)
"$SERVER" -t tls -c "$work/certs/server.crt" -k "$work/certs/server.key" \
  -r "$work/reg" -p "$tls_port" --bind 127.0.0.1 >"$work/tls.log" 2>&1 &
pids+=($!)
ratls_port=$(free_port)
"$SERVER" -t ra-tls -c "$work/certs/server.crt" -k "$work/certs/server.key" \
  --cpak "$work/ta.json" -j "$work/realm.json" \
  -r "$work/reg" -p "$ratls_port" --bind 127.0.0.1 >"$work/ratls.log" 2>&1 &
pids+=($!)
wait_for "https://localhost:$tls_port/v2/" --cacert "$work/certs/ca.crt"
for _ in $(seq 1 300); do grep -q ready "$work/ratls.log" && break; sleep 0.1; done

# serve_start NAME ARGS...: an endpoint on a free port; sets EP and EP_PID.
serve_start() {
  local name=$1 port
  shift
  port=$(free_port)
  "$CLIENT" serve "ra-tls://localhost:$ratls_port" --listen "127.0.0.1:$port" \
    --ca "$work/certs/ca.crt" --emulate-realm --realm-keys "$work/realm" "$@" \
    >"$work/$name.log" 2>&1 &
  EP_PID=$!
  pids+=("$EP_PID")
  EP=127.0.0.1:$port
  wait_for "http://$EP/v2/"
}
hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
tck=$(getconf CLK_TCK)
cpu_s() { awk -v t="$tck" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; } # user+system
tls_pid=${pids[0]} ratls_pid=${pids[1]}

mkdir -p "$work/sk-certs"
cp "$work/certs/ca.crt" "$work/sk-certs/ca.crt"
ref=team/app:t00
now() { date +%s.%N; }

serve_start plain
log "endpoint without cache: $EP (pid $EP_PID), peak RSS at start $(hwm_mib "$EP_PID") MiB"
wait_quiet "serve vs tls"
# idle_s: the seconds all CPUs spent idle so far (from /proc/stat).
idle_s() { awk -v t="$tck" '/^cpu / { printf "%.2f", ($5 + $6) / t }' /proc/stat; }
# timed_skopeo FILE ARGS...: skopeo, its user+system CPU seconds appended to FILE.
timed_skopeo() {
  local out=$1
  shift
  local TIMEFORMAT="%U %S"
  { time skopeo "$@" 2>&3; } 3>&2 2>>"$out"
}
sv=() tl=() ep_cpu=() ratls_cpu=() tls_cpu=() sv_idle=() tl_idle=()
for i in $(seq 1 "$ROUNDS"); do
  rm -rf "$work/sv" "$work/tl"
  c0=$(cpu_s "$EP_PID") r0=$(cpu_s "$ratls_pid") i0=$(idle_s)
  t0=$(now)
  timed_skopeo "$work/skopeo-sv.cpu" copy -q --src-tls-verify=false "docker://$EP/$ref" "oci:$work/sv:t00"
  t1=$(now)
  c1=$(cpu_s "$EP_PID") r1=$(cpu_s "$ratls_pid") s1=$(cpu_s "$tls_pid") i1=$(idle_s)
  timed_skopeo "$work/skopeo-tl.cpu" copy -q --src-cert-dir "$work/sk-certs" "docker://localhost:$tls_port/$ref" "oci:$work/tl:t00"
  t2=$(now)
  i2=$(idle_s)
  sv_idle+=("$(echo "$i1 - $i0" | bc)") tl_idle+=("$(echo "$i2 - $i1" | bc)")
  ep_cpu+=("$(echo "$c1 - $c0" | bc)") ratls_cpu+=("$(echo "$r1 - $r0" | bc)")
  tls_cpu+=("$(echo "$(cpu_s "$tls_pid") - $s1" | bc)")
  sv+=("$(echo "$t1 - $t0" | bc)") tl+=("$(echo "$t2 - $t1" | bc)")
  cmp -s "$work/sv/index.json" "$work/tl/index.json" || { echo "the two pulls differ" >&2; exit 1; }
  echo "round $i: through ir-client serve (RA-TLS) ${sv[-1]} s, straight over TLS ${tl[-1]} s"
done
plain_hwm=$(hwm_mib "$EP_PID")
ms=$(median "${sv[@]}") mt=$(median "${tl[@]}")
mib=$(echo "$BIG_MIB + 0.0625" | bc)

# --cache: the second pull asks the upstream for manifests only.
serve_start cached --cache "$work/cache"
rm -rf "$work/c1" "$work/c2"
skopeo copy -q --src-tls-verify=false "docker://$EP/$ref" "oci:$work/c1:t00"
rm -rf "$work/c1" "$work/sv" "$work/tl"
sleep 1 # the access log lines of the first pull are written
before=$(wc -l <"$work/ratls.log")
t0=$(now)
skopeo copy -q --src-tls-verify=false "docker://$EP/$ref" "oci:$work/c2:t00"
t1=$(now)
cached_s=$(echo "$t1 - $t0" | bc)
sleep 1
tail -n +"$((before + 1))" "$work/ratls.log" >"$work/second.log"
blob_reqs=$(grep -c 'path=/v2/[^ ]*/blobs/' "$work/second.log" || true)
manifest_reqs=$(grep -c 'path=/v2/[^ ]*/manifests/' "$work/second.log" || true)
cached_hwm=$(hwm_mib "$EP_PID")

echo
echo "median of $ROUNDS: through ir-client serve over RA-TLS $ms s ($(echo "scale=0; $mib / $ms" | bc) MiB/s)," \
  "straight over TLS $mt s ($(echo "scale=0; $mib / $mt" | bc) MiB/s); speed ratio serve/TLS $(echo "scale=2; $mt / $ms" | bc) (goal >= 0.9)"
echo "second pull with --cache: $cached_s s; upstream requests: $manifest_reqs manifest, $blob_reqs blob (goal: 0 blob)"
skopeo_cpu() { awk '{ print $1 + $2 }' "$1"; }
echo "CPU time per pull (median): endpoint $(median "${ep_cpu[@]}") s and its RA-TLS server $(median "${ratls_cpu[@]}") s; the TLS server $(median "${tls_cpu[@]}") s;" \
  "skopeo $(median $(skopeo_cpu "$work/skopeo-sv.cpu")) s through the endpoint, $(median $(skopeo_cpu "$work/skopeo-tl.cpu")) s straight"
echo "CPU idle during a pull (median, seconds summed over all CPUs): through the endpoint $(median "${sv_idle[@]}") s, straight $(median "${tl_idle[@]}") s"
echo "endpoint peak RSS (VmHWM): $plain_hwm MiB without cache over $ROUNDS pulls, $cached_hwm MiB with --cache (goal < 32 MiB)"
if ((${#UNDER_LOAD[@]})); then printf 'measured under load: %s\n' "${UNDER_LOAD[@]}"; fi
