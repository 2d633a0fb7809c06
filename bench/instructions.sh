#!/usr/bin/env bash
# Instructions per small request, counted by callgrind: deterministic to
# within about 1 % between runs, where throughput on 2 shared cores
# scatters by 10 %. For before/after comparisons of the request path.
#
#   bench/instructions.sh BIN [BIN ...] > instructions.md
#
# Each binary serves bench/gen_compare.py's content under valgrind
# (--no-access-log); after a warm-up, three phases are counted, each
# zeroed and dumped on its own: a manifest GET by tag with wrk (HTTP/1.1
# keep-alive, 4 connections, WRK_S seconds: the request of
# bench/compare.sh's ceiling row), then N requests (ab -k -c 4, HTTP/1.0
# keep-alive) of the same manifest and of tags/list.
#
# A binary named `ceiling` (bench/ceiling's release build) is run as the
# ceiling is in bench/compare.sh, answering every request with the
# manifest: its row has the two manifest columns only.
#
# Environment: N=3000 WRK_S=6 PORT=18290 BENCH_TMP=/var/tmp.
# Needs valgrind (callgrind_control, callgrind_annotate), wrk, ab, curl.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
: "${N:=3000}" "${WRK_S:=6}" "${PORT:=18290}" "${BENCH_TMP:=/var/tmp}"
work=$(mktemp -d "$BENCH_TMP/ir-instructions.XXXXXX")
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
info=$(python3 "$here/gen_compare.py" content "$work/root" --big-mib 4)
j() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(v if not isinstance(v, list) else " ".join(v))' "$info" "$1"; }
NAME=$(j name) TAG=$(j tags | cut -d' ' -f1) MANIFEST=$(j manifest)
url=http://127.0.0.1:$PORT
accept='Accept: application/vnd.oci.image.manifest.v1+json'
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n++ { gsub(",", "", $1); print $1 }'; }

echo "| binary | manifest by tag, wrk (HTTP/1.1), instructions/request | manifest by tag, ab -k (HTTP/1.0) | tags/list, ab -k |"
echo "| --- | --- | --- | --- |"
for bin in "$@"; do
    ports_free "$PORT"
    out=$work/callgrind.out
    paths=("manifests/$TAG" tags/list)
    if [[ $(basename "$bin") == ceiling ]]; then
        args=("$work/root/$NAME/blobs/sha256/${MANIFEST#sha256:}" "$PORT")
        ready=$url/
        paths=("manifests/$TAG")
        version=bench/ceiling
    else
        args=(-r "$work/root" --bind 127.0.0.1 -p "$PORT" --no-access-log)
        ready=$url/readyz
        version=$("$bin" -V 2>/dev/null | head -1)
    fi
    valgrind --tool=callgrind --callgrind-out-file="$out" --instr-atstart=no \
        "$bin" "${args[@]}" >"$work/server.log" 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "$ready"; do sleep 0.5; done
    callgrind_control -i on "$pid" >/dev/null 2>&1
    wrk -t1 -c4 -d1s -H "$accept" "$url/v2/$NAME/manifests/$TAG" >/dev/null 2>&1
    for path in "${paths[@]}"; do
        ab -k -c 4 -n 300 -H "$accept" "$url/v2/$NAME/$path" >/dev/null 2>&1
    done
    row="| \`$(basename "$bin")\` ($version) |"
    callgrind_control -z "$pid" >/dev/null 2>&1
    wrk -t1 -c4 -d"${WRK_S}s" -H "$accept" "$url/v2/$NAME/manifests/$TAG" >"$work/wrk.txt" 2>&1
    callgrind_control -d wrk "$pid" >/dev/null 2>&1
    served=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
    ! grep -q "Non-2xx\|Socket errors" "$work/wrk.txt" && [[ ${served:-0} -gt 0 ]] ||
        { log "wrk failed: $bin"; cat "$work/wrk.txt" >&2; exit 1; }
    row+=" $(($(total "$out.1") / served)) |"
    i=1
    for path in "${paths[@]}"; do
        i=$((i + 1))
        callgrind_control -z "$pid" >/dev/null 2>&1
        ab -k -c 4 -n "$N" -H "$accept" "$url/v2/$NAME/$path" >"$work/ab.txt" 2>&1
        grep -q "^Failed requests: *0" "$work/ab.txt" || { log "failed requests: $bin $path"; exit 1; }
        callgrind_control -d "phase$i" "$pid" >/dev/null 2>&1
        row+=" $(($(total "$out.$i") / N)) |"
    done
    ((${#paths[@]} == 2)) || row+=" - |"
    [[ -n ${KEEP_PROFILE:-} ]] && cp "$out.1" "$KEEP_PROFILE.$(basename "$bin").wrk"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    rm -f "$out"*
    echo "$row"
    log "$bin done"
done
