#!/usr/bin/env bash
# Before/after of one change: two ir-server binaries, interleaved (A B, then
# B A, ...) on the same content and the same loads as bench/compare.sh's
# plain-HTTP rows, medians and per-round ratios B/A.
#
#   bench/ab.sh BIN_A BIN_B > ab.md
#
# Environment: ROUNDS=5 DURATION=4 CONNS=64 BIG_MIB=256 BENCH_TMP=/var/tmp
# PORT_BASE=18180, QUIET_* as in bench/lib.sh. Needs wrk, ab, curl, python3.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${QUIET_LOAD:=1.0}"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
: "${ROUNDS:=5}" "${DURATION:=4}" "${CONNS:=64}" "${BIG_MIB:=256}" "${BENCH_TMP:=/var/tmp}" "${PORT_BASE:=18180}"
A=$1 B=$2
work=$(mktemp -d "$BENCH_TMP/ir-ab.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
info=$(python3 "$here/gen_compare.py" content "$work/root" --big-mib "$BIG_MIB")
j() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(v if not isinstance(v, list) else " ".join(v))' "$info" "$1"; }
NAME=$(j name) BIG=$(j big) BIG_SIZE=$(j big_size) SMALL=$(j small) TAG=$(j tags | cut -d' ' -f1)
ports_free "$PORT_BASE" $((PORT_BASE + 1))
"$A" -r "$work/root" --bind 127.0.0.1 -p "$PORT_BASE" --no-access-log 2>/dev/null &
pids+=($!)
"$B" -r "$work/root" --bind 127.0.0.1 -p $((PORT_BASE + 1)) --no-access-log 2>/dev/null &
pids+=($!)
declare -A URL=([A]=http://127.0.0.1:$PORT_BASE [B]=http://127.0.0.1:$((PORT_BASE + 1)))
for s in A B; do
    until curl -sf -o /dev/null "${URL[$s]}/readyz"; do sleep 0.1; done
done
declare -A R
add() { R[$1|$2]+="${R[$1|$2]:+ }$3"; }
wrk_rps() {
    local out
    out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$2")
    add "$1" "$3" "$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")"
    add "$1 p99" "$3" "$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else sub(/ms$/, "", v); print v }' <<<"$out")"
}
ab_rps() {
    local out
    out=$(ab -k -i -q -c "$CONNS" -t "$DURATION" -n 100000000 "$2" 2>&1)
    add "$1" "$3" "$(awk '/^Requests per second:/ { printf "%.0f", $4 }' <<<"$out")"
}
streams() {
    local n=$2 t0 t1 cp=() i
    t0=$(date +%s%N)
    for ((i = 0; i < n; i++)); do curl -s -o /dev/null "${URL[$3]}/v2/$NAME/blobs/$BIG" & cp+=($!); done
    wait "${cp[@]}"
    t1=$(date +%s%N)
    add "$1" "$3" "$(awk -v b="$BIG_SIZE" -v n="$n" -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", n * b / 1048576 / (t / 1e9) }')"
}
wait_quiet "a/b"
for r in $(seq 1 "$ROUNDS"); do
    order="A B"
    ((r % 2 == 0)) && order="B A"
    log "round $r: $order"
    for s in $order; do wrk_rps "manifest by tag req/s" "${URL[$s]}/v2/$NAME/manifests/$TAG" "$s"; done
    for s in $order; do wrk_rps "tags/list req/s" "${URL[$s]}/v2/$NAME/tags/list" "$s"; done
    for s in $order; do wrk_rps "catalog req/s" "${URL[$s]}/v2/_catalog" "$s"; done
    for s in $order; do ab_rps "HEAD blob req/s" "${URL[$s]}/v2/$NAME/blobs/$SMALL" "$s"; done
    for s in $order; do streams "$BIG_MIB MiB, 1 stream MiB/s" 1 "$s"; done
    for s in $order; do streams "$BIG_MIB MiB, 4 streams MiB/s" 4 "$s"; done
done
echo "A: $A; B: $B; $ROUNDS rounds of $DURATION s, quiet at start: $QUIET"
echo
echo "| measure | A | B | B/A per round |"
echo "| --- | --- | --- | --- |"
for t in "manifest by tag req/s" "manifest by tag req/s p99" "tags/list req/s" "tags/list req/s p99" "catalog req/s" "catalog req/s p99" \
    "HEAD blob req/s" "$BIG_MIB MiB, 1 stream MiB/s" "$BIG_MIB MiB, 4 streams MiB/s"; do
    read -ra a <<<"${R[$t|A]}"
    read -ra b <<<"${R[$t|B]}"
    rs=()
    for i in "${!a[@]}"; do rs+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { printf "%.2f", y / x }')"); done
    echo "| $t | $(median "${a[@]}") | $(median "${b[@]}") | **$(median "${rs[@]}")** (${rs[*]}) |"
done
