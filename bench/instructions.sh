#!/usr/bin/env bash
# Instructions per small request, counted by callgrind: deterministic to
# within about 1 % between runs, where throughput on 2 shared cores
# scatters by 10 %. For before/after comparisons of the request path.
#
#   bench/instructions.sh BIN [BIN ...] > instructions.md
#
# Each binary serves bench/gen_compare.py's content under valgrind
# (--no-access-log); after a warm-up, N requests (ab -k -c 4) of a
# manifest by tag and of tags/list are counted, each phase zeroed and
# dumped on its own. Environment: N=3000 PORT=18290 BENCH_TMP=/var/tmp.
# Needs valgrind (callgrind_control, callgrind_annotate), ab, curl.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
: "${N:=3000}" "${PORT:=18290}" "${BENCH_TMP:=/var/tmp}"
work=$(mktemp -d "$BENCH_TMP/ir-instructions.XXXXXX")
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
info=$(python3 "$here/gen_compare.py" content "$work/root" --big-mib 4)
j() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(v if not isinstance(v, list) else " ".join(v))' "$info" "$1"; }
NAME=$(j name) TAG=$(j tags | cut -d' ' -f1)
url=http://127.0.0.1:$PORT
accept='Accept: application/vnd.oci.image.manifest.v1+json'
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n++ { gsub(",", "", $1); print $1 }'; }

echo "| binary | manifest by tag, instructions/request | tags/list, instructions/request |"
echo "| --- | --- | --- |"
for bin in "$@"; do
    ports_free "$PORT"
    out=$work/callgrind.out
    valgrind --tool=callgrind --callgrind-out-file="$out" --instr-atstart=no \
        "$bin" -r "$work/root" --bind 127.0.0.1 -p "$PORT" --no-access-log >"$work/server.log" 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "$url/readyz"; do sleep 0.5; done
    callgrind_control -i on "$pid" >/dev/null 2>&1
    for path in "manifests/$TAG" tags/list; do
        ab -k -c 4 -n 300 -H "$accept" "$url/v2/$NAME/$path" >/dev/null 2>&1
    done
    row="| \`$(basename "$bin")\` ($("$bin" -V 2>/dev/null | head -1)) |"
    i=0
    for path in "manifests/$TAG" tags/list; do
        i=$((i + 1))
        callgrind_control -z "$pid" >/dev/null 2>&1
        ab -k -c 4 -n "$N" -H "$accept" "$url/v2/$NAME/$path" >"$work/ab.txt" 2>&1
        grep -q "^Failed requests: *0" "$work/ab.txt" || { log "failed requests: $bin $path"; exit 1; }
        callgrind_control -d "phase$i" "$pid" >/dev/null 2>&1
        row+=" $(($(total "$out.$i") / N)) |"
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    rm -f "$out"*
    echo "$row"
    log "$bin done"
done
