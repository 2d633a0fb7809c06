#!/usr/bin/env bash
# Side-by-side benchmark (issue 5): ir-server against nginx serving the same
# blob files as static files (sendfile on), and against the CNCF registry
# (Debian's docker-registry), all on 127.0.0.1 with the same content.
#
#   bench/compare.sh > report.md      # builds, generates, measures
#
# Measures, in ROUNDS rounds whose server order rotates, medians and the
# per-round ratios to nginx of:
#   - small requests (wrk, keep-alive, CONNS connections, DURATION s):
#     manifest GET by tag and by digest, tags/list, catalog; HEAD blob with
#     `ab -k -i` (wrk hangs on HEAD responses with a Content-Length);
#     requests/s and p99 latency;
#   - the ceiling: the same manifest GET against bench/ceiling, a minimal
#     hyper server answering the manifest's bytes from memory (ir-server's
#     runtime, hyper settings, allocator and response headers), and
#     ir-server's rate as a fraction of it (how close to the stack's limit);
#   - a BIG_MIB MiB blob: 1 stream and 4 parallel streams (curl), MiB/s;
#     1 MiB Range requests from its middle (wrk, 4 connections);
#   - the same over TLS (ir-server -t tls against nginx with ssl and http2,
#     same certificate from scripts/make-dev-cert.sh); the big blob over
#     HTTP/2 (what curl negotiates with both) and over HTTP/1.1;
#   - peak RSS (VmHWM, reset with clear_refs before the small requests of
#     each round) under the small-request load;
# then ir-server's start-up: time from exec to ready (sd_notify READY=1, sent when /readyz turns 200) for a
# registry of few big blobs (STARTUP_BIG_APPS x 4 x 256 MiB, 2 GiB) and of
# MANY_APPS applications x MANY_TAGS tags (many small files), cold page cache
# when /proc/sys/vm/drop_caches is writable (else evicted with
# posix_fadvise, else warm; the report says which), and the memory per
# entry of the model: (RSS ready - RSS of an empty registry - manifest
# bytes) / (manifests + blobs); and the verification throughput, warm
# `--check` of the 2 GiB registry against cores x `openssl speed`.
#
# Environment (all optional):
#   ROUNDS=5 DURATION=4 CONNS=64 BIG_MIB=256 STARTUP_RUNS=3
#   MANY_APPS=10000 MANY_TAGS=10 STARTUP_BIG_APPS=2
#   SKIP_STARTUP=1                  only the side-by-side part
#   SKIP_REGISTRY=1                 no docker-registry
#   BENCH_TMP=/var/tmp KEEP=1       where content goes; keep it afterwards
#   IR_BIN=path                     measure this binary instead of building
#   PORT_BASE=18080                 ports PORT_BASE..PORT_BASE+4
#   QUIET_LOAD=1.0, QUIET_MAX_WAIT, QUIET_STEAL=5  see bench/lib.sh
#   QUIET_STEAL_WAIT=180            longest wait for low steal before a round
#
# Needs root on Debian for the apt installs (nginx, docker-registry, wrk,
# apache2-utils, skopeo, curl, python3, openssl), and cargo. Progress goes
# to stderr, the Markdown report to stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
: "${QUIET_LOAD:=1.0}"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

: "${ROUNDS:=5}" "${DURATION:=4}" "${CONNS:=64}" "${BIG_MIB:=256}"
: "${STARTUP_RUNS:=3}" "${MANY_APPS:=10000}" "${MANY_TAGS:=10}" "${STARTUP_BIG_APPS:=2}"
: "${BENCH_TMP:=/var/tmp}" "${PORT_BASE:=18080}"
IR_PORT=$PORT_BASE NG_PORT=$((PORT_BASE + 1)) RG_PORT=$((PORT_BASE + 2))
IRS_PORT=$((PORT_BASE + 3)) NGS_PORT=$((PORT_BASE + 4)) IRX_PORT=$((PORT_BASE + 5))
CEIL_PORT=$((PORT_BASE + 6))

# ---- prerequisites ----------------------------------------------------------
need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
[[ -n ${SKIP_REGISTRY:-} ]] || command -v docker-registry >/dev/null || need+=(docker-registry)
command -v wrk >/dev/null || need+=(wrk)
command -v ab >/dev/null || need+=(apache2-utils)
[[ -n ${SKIP_REGISTRY:-} ]] || command -v skopeo >/dev/null || need+=(skopeo)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
command -v pgrep >/dev/null || need+=(procps)
if ((${#need[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "missing: ${need[*]} (run as root on Debian to install them)" >&2
        exit 2
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# The Debian package starts its own nginx and registry on :80 and :5000; we
# start ours on other ports and leave those alone.

# ---- build ------------------------------------------------------------------
if [[ -n ${IR_BIN:-} ]]; then
    bin=$IR_BIN
else
    command -v cargo >/dev/null || { echo "missing: cargo (install Rust)" >&2; exit 2; }
    log "building: cargo build --release -p ir-server"
    (cd "$repo" && cargo build --release -p ir-server --quiet)
    bin=$repo/target/release/ir-server
fi
log "building: bench/ceiling"
cargo build --release --quiet --manifest-path "$here/ceiling/Cargo.toml" --target-dir "$repo/target"
ceiling_bin=$repo/target/release/ceiling
rev=${BENCH_REV:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)}

# ---- content ----------------------------------------------------------------
work=$(mktemp -d "$BENCH_TMP/ir-compare.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ ${KEEP:-} == 1 ]] && log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
root=$work/root tree=$work/nginx-tree certs=$work/certs
log "generating content under $work"
info=$(python3 "$here/gen_compare.py" content "$root" --big-mib "$BIG_MIB")
python3 "$here/gen_compare.py" nginx-tree "$root" "$tree"
"$repo/scripts/make-dev-cert.sh" "$certs" >/dev/null
# The start-up registries are written now, not just before their start-up is
# measured: a tree read back seconds after 3 GiB were written reads slower
# while the writes settle (a cold --check of 10,000 x 10 took a fifth
# longer right after writing). A registry a server starts on has been at rest.
big_root=$work/big many_root=$work/many empty_root=$work/empty
if [[ -z ${SKIP_STARTUP:-} ]]; then
    log "generating the start-up registries"
    big_info=$(python3 "$here/gen_compare.py" big "$big_root" --apps "$STARTUP_BIG_APPS")
    many_info=$(python3 "$here/gen_compare.py" many "$many_root" --apps "$MANY_APPS" --tags "$MANY_TAGS")
fi
jq_() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(v if not isinstance(v, list) else " ".join(v))' "$info" "$1"; }
NAME=$(jq_ name) MANIFEST=$(jq_ manifest) BIG=$(jq_ big) BIG_SIZE=$(jq_ big_size) SMALL=$(jq_ small)
TAG=$(jq_ tags | cut -d' ' -f1)
ACCEPT="Accept: application/vnd.oci.image.manifest.v1+json"
RANGE_START=$((BIG_SIZE / 2)) RANGE_LEN=$((1 << 20))
RANGE="Range: bytes=$RANGE_START-$((RANGE_START + RANGE_LEN - 1))"

# ---- servers ----------------------------------------------------------------
wait_http() { # URL [curl args]: until it answers 200 (30 s)
    local url=$1 i
    shift
    for i in $(seq 1 300); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$@" "$url" 2>/dev/null) == 200 ]] && return 0
        sleep 0.1
    done
    echo "no 200 from $url" >&2
    return 1
}

ports_free "$IR_PORT" "$NG_PORT" "$RG_PORT" "$IRS_PORT" "$NGS_PORT" "$IRX_PORT" "$CEIL_PORT"
log "starting ir-server (plain :$IR_PORT, TLS :$IRS_PORT)"
"$bin" -r "$root" --bind 127.0.0.1 -p "$IR_PORT" --no-access-log 2>"$work/ir.log" &
IR_PID=$!
pids+=("$IR_PID")
"$bin" -r "$root" --bind 127.0.0.1 -p "$IRS_PORT" -t tls -c "$certs/server.crt" -k "$certs/server.key" \
    --no-access-log 2>"$work/irs.log" &
IRS_PID=$!
pids+=("$IRS_PID")
log "starting the ceiling (:$CEIL_PORT)"
"$ceiling_bin" "$root/$NAME/blobs/sha256/${MANIFEST#sha256:}" "$CEIL_PORT" 2>"$work/ceiling.log" &
pids+=($!)
URL_CEILING=http://127.0.0.1:$CEIL_PORT

log "starting nginx (plain :$NG_PORT, TLS :$NGS_PORT)"
mkdir -p "$work/nginx-tmp"
cat >"$work/nginx.conf" <<EOF
user root;
worker_processes $(nproc);
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    fastcgi_temp_path $work/nginx-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-tmp/uwsgi;
    scgi_temp_path $work/nginx-tmp/scgi;
    types { }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$NG_PORT;
        # http2: offer h2 by ALPN as ir-server does (and as a production
        # nginx does), so that TLS rows compare the same protocol; curl
        # picks h2 with both. (nginx >= 1.25.1 prefers "http2 on;" but
        # still takes this form.)
        listen 127.0.0.1:$NGS_PORT ssl http2;
        ssl_certificate $certs/server.crt;
        ssl_certificate_key $certs/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $tree;
        add_header Docker-Distribution-API-Version registry/2.0 always;
        location ~ ^/v2/.+/manifests/ { default_type application/vnd.oci.image.manifest.v1+json; }
        location ~ ^/v2/.+/tags/list\$ { default_type application/json; }
        location = /v2/_catalog { default_type application/json; }
    }
}
EOF
"$NGINX" -c "$work/nginx.conf" &
NG_PID=$!
pids+=("$NG_PID")

servers=(ir nginx)
if [[ -z ${SKIP_REGISTRY:-} ]]; then
    log "starting docker-registry (:$RG_PORT) and pushing with skopeo"
    cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $work/distribution
http:
  addr: 127.0.0.1:$RG_PORT
EOF
    docker-registry serve "$work/registry.yml" 2>"$work/registry.log" &
    RG_PID=$!
    pids+=("$RG_PID")
    servers+=(registry)
fi

wait_http "http://127.0.0.1:$IR_PORT/readyz"
wait_http "https://127.0.0.1:$IRS_PORT/readyz" --cacert "$certs/ca.crt"
wait_http "http://127.0.0.1:$NG_PORT/v2/_catalog"
if [[ -n ${RG_PID:-} ]]; then
    wait_http "http://127.0.0.1:$RG_PORT/v2/"
    push_start=$SECONDS
    for name in $(jq_ names); do
        tags=latest
        [[ $name == "$NAME" ]] && tags=$(jq_ tags)
        for t in $tags; do
            skopeo copy -q --preserve-digests --dest-tls-verify=false \
                "oci:$root/$name:$t" "docker://127.0.0.1:$RG_PORT/$name:$t" >/dev/null
        done
    done
    log "pushed in $((SECONDS - push_start))s"
fi

declare -A URL
for s in "${servers[@]}"; do
    case $s in
    ir) URL[$s]=http://127.0.0.1:$IR_PORT ;;
    nginx) URL[$s]=http://127.0.0.1:$NG_PORT ;;
    registry) URL[$s]=http://127.0.0.1:$RG_PORT ;;
    esac
done
URL[ir-tls]=https://127.0.0.1:$IRS_PORT
URL[nginx-tls]=https://127.0.0.1:$NGS_PORT
tls_servers=(ir-tls nginx-tls)
declare -A PID=([ir]=$IR_PID [nginx]=$NG_PID [registry]=${RG_PID:-0} [ir-tls]=$IRS_PID [nginx-tls]=$NG_PID)

# Every server answers the same bytes before anything is timed.
for s in "${servers[@]}" "${tls_servers[@]}"; do
    u=${URL[$s]}
    for p in "/v2/$NAME/manifests/$TAG" "/v2/$NAME/manifests/$MANIFEST" "/v2/$NAME/blobs/$SMALL"; do
        got=$(curl -sf --cacert "$certs/ca.crt" -H "$ACCEPT" "$u$p" | sha256sum | cut -d' ' -f1)
        want=${p##*/}
        [[ $p == */manifests/$TAG ]] && want=$MANIFEST
        [[ sha256:$got == "${want}" ]] || { echo "$s: $p does not hash to $want" >&2; exit 1; }
    done
    curl -sf --cacert "$certs/ca.crt" -o /dev/null "$u/v2/$NAME/tags/list" || { echo "$s: tags/list failed" >&2; exit 1; }
    curl -sf --cacert "$certs/ca.crt" -o /dev/null "$u/v2/_catalog" || { echo "$s: _catalog failed" >&2; exit 1; }
done
log "all servers answer the same content"

# ---- measurement helpers ------------------------------------------------------
declare -A R # "test|server" -> values, one per round
add() { R[$1|$2]+="${R[$1|$2]:+ }$3"; }

# ms VALUE: wrk's latency (e.g. 812.00us, 1.20ms, 2.01s) in milliseconds.
ms() { awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v) }
    else if (v ~ /m$/) { sub(/m$/, "", v); v *= 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
    printf "%.3f", v }'; }

# wrk_run TEST SERVER PATH CONNS [HEADER...]: requests/s and p99 (ms).
wrk_run() {
    local test=$1 s=$2 path=$3 c=$4 out
    shift 4
    local hdr=() h
    for h in "$@"; do hdr+=(-H "$h"); done
    out=$(wrk -t2 -c"$c" -d"${DURATION}s" --latency "${hdr[@]}" "${URL[$s]}$path" 2>&1)
    if grep -q 'Non-2xx' <<<"$out" || ! grep -q '^Requests/sec' <<<"$out"; then
        echo "wrk $test against $s failed:" >&2
        echo "$out" >&2
        exit 1
    fi
    add "$test" "$s" "$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")"
    add "$test p99 ms" "$s" "$(ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
}

# ab_head TEST SERVER PATH: HEAD with keep-alive (`ab -k -i`).
ab_head() {
    local test=$1 s=$2 path=$3 out
    # p99 from ab's CSV of percentiles (microseconds): its summary prints
    # whole milliseconds, and at 1-2 ms a ratio of those is 1, 1.5 or 2.
    out=$(ab -k -i -q -c "$CONNS" -t "$DURATION" -n 100000000 -e "$work/ab-percentiles.csv" "${URL[$s]}$path" 2>&1)
    if ! grep -q '^Requests per second' <<<"$out" || grep -q '^Non-2xx' <<<"$out"; then
        echo "ab $test against $s failed:" >&2
        echo "$out" >&2
        exit 1
    fi
    add "$test" "$s" "$(awk '/^Requests per second:/ { printf "%.0f", $4 }' <<<"$out")"
    add "$test p99 ms" "$s" "$(awk -F, '$1 == "99" { print $2 }' "$work/ab-percentiles.csv")"
}

# stream TEST SERVER N [HTTP]: N parallel GETs of the big blob; total MiB/s.
# HTTP empty: what curl negotiates, HTTP/2 by ALPN with either TLS server
# (both offer h2 and http/1.1), HTTP/1.1 in plain text; HTTP=1.1 forces
# HTTP/1.1. Every download must be a 200 of the whole blob over the HTTP
# version expected, so both servers of a row speak the same protocol.
stream() {
    local test=$1 s=$2 n=$3 http=${4:-} want i t0 t1 bad=0 cp=() opt=()
    if [[ $http == 1.1 ]]; then
        opt=(--http1.1) want=1.1
    elif [[ ${URL[$s]} == https:* ]]; then
        want=2
    else
        want=1.1
    fi
    # This VM's host pages out idle page cache (docs/benchmarks.md, section
    # 1, finding 5): read the blob back in first, so that every server is
    # measured from a warm cache rather than whatever survived the rounds.
    cat "$root/$NAME/blobs/${BIG%%:*}/${BIG#*:}" >/dev/null
    t0=$(date +%s%N)
    for i in $(seq 1 "$n"); do
        curl -s "${opt[@]}" --cacert "$certs/ca.crt" -o /dev/null \
            -w '%{http_code} %{size_download} %{http_version}\n' \
            "${URL[$s]}/v2/$NAME/blobs/$BIG" >"$work/stream.$i" &
        cp+=($!)
    done
    wait "${cp[@]}"
    t1=$(date +%s%N)
    for i in $(seq 1 "$n"); do
        [[ $(cat "$work/stream.$i") == "200 $BIG_SIZE $want" ]] || bad=1
    done
    ((bad == 0)) || {
        echo "$test against $s: incomplete download or not HTTP/$want: $(cat "$work/stream.1")" >&2
        exit 1
    }
    add "$test" "$s" "$(awk -v b="$BIG_SIZE" -v n="$n" -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", n * b / 1048576 / (t / 1e9) }')"
}

# rss_kib PID: VmHWM (peak RSS) of a process and its children, in KiB.
hwm_kib() {
    local p total=0 v
    for p in $1 $(pgrep -P "$1" || true); do
        v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
reset_hwm() {
    local p
    for p in $1 $(pgrep -P "$1" || true); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
}

# rotate N ITEMS...: the items rotated left by N.
rotate() {
    local n=$1
    shift
    local a=("$@") k=${#a[@]} i
    for ((i = 0; i < k; i++)); do printf '%s ' "${a[(i + n) % k]}"; done
}

# Per-round check: other people's builds or benchmarks on the machine, and
# the hypervisor's steal. The load average is no help between rounds (our
# own load lingers in it), so only running compilers, the CPU use of the
# last second and its steal count. Steal is waited out for at most
# QUIET_STEAL_WAIT seconds (a busy host can stay busy for an hour); each
# round's steal is reported either way.
: "${QUIET_STEAL_WAIT:=180}"
round_quiet() {
    local start=$SECONDS busy p pct steal
    while :; do
        busy=""
        for p in rustc cc1 cc1plus clippy-driver rustdoc; do
            pgrep -x "$p" >/dev/null && busy+="${busy:+ }$p"
        done
        read -r pct steal < <(cpu_busy_steal_pct)
        if [[ -z $busy ]] && ((pct <= 25)); then
            awk -v s="$steal" -v m="$QUIET_STEAL" 'BEGIN { exit !(s <= m) }' && return 0
            if ((SECONDS - start >= QUIET_STEAL_WAIT)); then
                log "round $1: host steal $steal% after ${QUIET_STEAL_WAIT}s of waiting; measuring"
                return 0
            fi
        fi
        if ((SECONDS - start >= QUIET_MAX_WAIT)); then
            UNDER_LOAD+=("round $1: CPUs $pct% busy${busy:+, running: $busy}")
            log "WARNING: round $1 measured under load"
            return 0
        fi
        sleep "$QUIET_POLL"
    done
}

# ---- rounds -------------------------------------------------------------------
wait_quiet "side-by-side rounds"
first_quiet=$QUIET
log "warm-up"
# ir-server's first whole download of a blob after start hashes it with
# SHA-256 (last chunk held back), seals it and copies the checked bytes to
# its blob cache (a sealed memfd, default --blob-cache); later downloads
# are sent from that copy (or, if it was evicted, checked per chunk against
# the seal). The warm-up is that first download: timed and reported on its
# own row, so the rounds measure the steady state, as nginx's rounds
# measure a warm page cache.
for s in "${servers[@]}" "${tls_servers[@]}"; do
    wrk -t2 -c"$CONNS" -d1s -H "$ACCEPT" "${URL[$s]}/v2/$NAME/manifests/$TAG" >/dev/null 2>&1
    case $s in
    ir | ir-tls) stream "first $BIG_MIB MiB download after start (SHA-256, seal, copy to memory) MiB/s" "$s" 1 ;;
    *) curl -s --cacert "$certs/ca.crt" -o /dev/null "${URL[$s]}/v2/$NAME/blobs/$BIG" ;;
    esac
done

ROUND_STEAL=()
TESTS_SMALL=("manifest by tag" "manifest by digest" "tags/list" "catalog" "HEAD blob")
for r in $(seq 1 "$ROUNDS"); do
    round_quiet "$r"
    order=$(rotate $((r - 1)) "${servers[@]}")
    torder=$(rotate $((r - 1)) "${tls_servers[@]}")
    log "round $r/$ROUNDS: $order| TLS: $torder"
    round_stat=$(head -1 /proc/stat)
    for s in $order; do reset_hwm "${PID[$s]}"; done
    for s in $order; do wrk_run "manifest by tag" "$s" "/v2/$NAME/manifests/$TAG" "$CONNS" "$ACCEPT"; done
    URL[ceiling]=$URL_CEILING
    for s in $(rotate $((r - 1)) ir ceiling); do wrk_run "manifest GET, ir-server against the ceiling" "$s" "/v2/$NAME/manifests/$TAG" "$CONNS" "$ACCEPT"; done
    for s in $order; do wrk_run "manifest by digest" "$s" "/v2/$NAME/manifests/$MANIFEST" "$CONNS" "$ACCEPT"; done
    for s in $order; do wrk_run "tags/list" "$s" "/v2/$NAME/tags/list" "$CONNS"; done
    for s in $order; do wrk_run "catalog" "$s" "/v2/_catalog" "$CONNS"; done
    for s in $order; do ab_head "HEAD blob" "$s" "/v2/$NAME/blobs/$SMALL"; done
    for s in $order; do add "peak RSS MiB (small requests)" "$s" "$(awk -v k="$(hwm_kib "${PID[$s]}")" 'BEGIN { printf "%.1f", k / 1024 }')"; done
    for s in $order; do stream "$BIG_MIB MiB blob, 1 stream MiB/s" "$s" 1; done
    for s in $order; do stream "$BIG_MIB MiB blob, 4 streams MiB/s" "$s" 4; done
    for s in $order; do wrk_run "1 MiB Range from the middle" "$s" "/v2/$NAME/blobs/$BIG" 4 "$RANGE"; done

    for s in $torder; do wrk_run "TLS manifest by tag" "$s" "/v2/$NAME/manifests/$TAG" "$CONNS" "$ACCEPT"; done
    for s in $torder; do wrk_run "TLS manifest by digest" "$s" "/v2/$NAME/manifests/$MANIFEST" "$CONNS" "$ACCEPT"; done
    for s in $torder; do wrk_run "TLS tags/list" "$s" "/v2/$NAME/tags/list" "$CONNS"; done
    for s in $torder; do wrk_run "TLS catalog" "$s" "/v2/_catalog" "$CONNS"; done
    for s in $torder; do ab_head "TLS HEAD blob" "$s" "/v2/$NAME/blobs/$SMALL"; done
    for s in $torder; do stream "TLS $BIG_MIB MiB blob, 1 stream MiB/s" "$s" 1; done
    for s in $torder; do stream "TLS $BIG_MIB MiB blob, 4 streams MiB/s" "$s" 4; done
    for s in $torder; do stream "TLS HTTP/1.1 $BIG_MIB MiB blob, 1 stream MiB/s" "$s" 1 1.1; done
    for s in $torder; do stream "TLS HTTP/1.1 $BIG_MIB MiB blob, 4 streams MiB/s" "$s" 4 1.1; done
    for s in $torder; do wrk_run "TLS 1 MiB Range from the middle" "$s" "/v2/$NAME/blobs/$BIG" 4 "$RANGE"; done
    round_steal=$(stat_pct "$round_stat" "$(head -1 /proc/stat)" | cut -d' ' -f2)
    ROUND_STEAL+=("$round_steal")
    log "round $r: host steal $round_steal% of the CPUs' time"
done
for s in "${servers[@]}"; do
    add "peak RSS MiB (whole run)" "$s" "$(awk -v k="$(hwm_kib "${PID[$s]}")" 'BEGIN { printf "%.1f", k / 1024 }')"
done
# The blob cache's memory is shared memory (one memfd per blob), in the
# resident set only while mapped for sending: report it on its own.
blob_copies_mib() {
    local f total=0
    for f in /proc/"$1"/fd/*; do
        [[ $(readlink "$f" 2>/dev/null) == /memfd:ir-server-blob* ]] || continue
        total=$((total + $(stat -L -c %s "$f")))
    done
    awk -v b="$total" 'BEGIN { printf "%.1f", b / 1048576 }'
}
add "blob copies in memory MiB (after the rounds)" ir "$(blob_copies_mib "${PID[ir]}")"
add "blob copies in memory MiB (after the rounds)" ir-tls "$(blob_copies_mib "$IRS_PID")"
add "peak RSS MiB (whole run)" "ir-tls" "$(awk -v k="$(hwm_kib "$IRS_PID")" 'BEGIN { printf "%.1f", k / 1024 }')"

for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

# ---- ir-server start-up ---------------------------------------------------------
sha_mib=$(openssl_sha256_mib)
startup_rows=()
if [[ -z ${SKIP_STARTUP:-} ]]; then
    cold_method="warm page cache (could not drop it)"
    if (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
        cold_method="cold: sync; echo 3 > /proc/sys/vm/drop_caches before each run"
    elif python3 "$here/gen_compare.py" evict "$root" 2>/dev/null; then
        cold_method="cold: posix_fadvise(DONTNEED) of every file before each run (drop_caches not writable)"
    fi
    make_cold() {
        case $cold_method in
        cold:\ sync*) sync; echo 3 >/proc/sys/vm/drop_caches ;;
        cold:*) python3 "$here/gen_compare.py" evict "$1" ;;
        esac
    }
    # start_ready ROOT: starts ir-server, sets READY_S (exec to ready: its
    # sd_notify READY=1, sent when /readyz turns 200; see ready_time.py for
    # why not poll) and SPID.
    start_ready() {
        local out
        out=$(python3 "$here/ready_time.py" "$work/startup.log" \
            "$bin" -r "$1" --bind 127.0.0.1 -p "$IRX_PORT" --no-access-log)
        SPID=${out% *} READY_S=${out#* }
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$IRX_PORT/readyz") == 200 ]] ||
            { echo "ir-server said ready but /readyz is not 200" >&2; exit 1; }
    }
    # The server is not this shell's child (ready_time.py started it).
    stop() { kill "$SPID"; while kill -0 "$SPID" 2>/dev/null; do sleep 0.05; done; }
    rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

    mkdir -p "$empty_root"
    j() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
    big_bytes=$(( $(j "$big_info" blob_bytes) + $(j "$big_info" manifest_bytes) ))
    entries=$(j "$many_info" entries) mbytes=$(j "$many_info" manifest_bytes)

    wait_quiet "start-up"
    start_ready "$empty_root"
    sleep 1
    base_kib=$(rss_kib "$SPID")
    stop
    big_s=() many_s=() per_entry=() many_rss=()
    for i in $(seq 1 "$STARTUP_RUNS"); do
        make_cold "$big_root"
        start_ready "$big_root"
        stop
        big_s+=("$READY_S")
        make_cold "$many_root"
        start_ready "$many_root"
        sleep 1
        kib=$(rss_kib "$SPID")
        stop
        many_s+=("$READY_S")
        many_rss+=("$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')")
        per_entry+=("$(awk -v k="$kib" -v b="$base_kib" -v m="$mbytes" -v e="$entries" 'BEGIN { printf "%.0f", ((k - b) * 1024 - m) / e }')")
        log "start-up run $i: 2 GiB ${big_s[-1]}s, ${MANY_APPS}x$MANY_TAGS ${many_s[-1]}s, RSS ${many_rss[-1]} MiB, ${per_entry[-1]} B/entry"
    done
    # Verification throughput, the goal's measure: warm `--check` of the
    # same 2 GiB registry (the cold runs above are bound by the disk, not
    # by hashing); bench/verify.sh measures this in more detail. Each run
    # is compared with `openssl speed` taken just before and just after it
    # (their mean, times the cores): on a shared host the rate of a core
    # changes from minute to minute, and a ratio of rates taken minutes
    # apart measures the host as much as the hashing.
    # The registry is read into the page cache right before each run: this
    # VM drops idle page cache behind our back (18 % of it after 90 s idle,
    # with 22 GB free), and a half-cold run measures the disk again.
    check_rates=() check_ratios=() check_openssl=()
    for i in $(seq 1 "$STARTUP_RUNS"); do
        wait_quiet "verification $i"
        o1=$(openssl_sha256_mib)
        find "$big_root" -type f -exec cat {} + >/dev/null
        rate=$("$bin" --check -r "$big_root" 2>/dev/null |
            sed -nE 's/.* in [0-9.]+s \(([0-9]+) MiB\/s\).*/\1/p' | tail -1)
        o2=$(openssl_sha256_mib)
        [[ -n $rate ]] || { echo "ir-server --check printed no rate" >&2; exit 1; }
        check_rates+=("$rate")
        check_openssl+=("$(((o1 + o2) / 2))")
        check_ratios+=("$(awk -v r="$rate" -v a="$o1" -v b="$o2" -v c="$(nproc)" 'BEGIN { printf "%.2f", r / (c * (a + b) / 2) }')")
        log "verification run $i (warm --check): $rate MiB/s; openssl $o1 before, $o2 after: ${check_ratios[-1]} x cores x openssl"
    done
    bm=$(median "${big_s[@]}")
    startup_rows+=("| ready, $STARTUP_BIG_APPS apps x 4 x 256 MiB ($(awk -v b="$big_bytes" 'BEGIN { printf "%.2f GiB", b / 2^30 }')), s | $bm (runs: ${big_s[*]}) | $(awk -v b="$big_bytes" -v s="$bm" 'BEGIN { printf "%.0f", b / 1048576 / s }') MiB/s cold (reads from the disk; the goal is on the verification row) |")
    cm=$(median "${check_rates[@]}")
    startup_rows+=("| verification, warm \`--check\` of that registry, MiB/s | $cm (runs: ${check_rates[*]}; openssl around each: ${check_openssl[*]}) | **$(median "${check_ratios[@]}")** x (cores x openssl), per run: ${check_ratios[*]}; goal >= 0.9 |")
    startup_rows+=("| ready, $MANY_APPS apps x $MANY_TAGS tags ($entries entries), s | $(median "${many_s[@]}") (runs: ${many_s[*]}) | goal < 5 s |")
    startup_rows+=("| RSS ready with that registry, MiB | $(median "${many_rss[@]}") (empty registry: $(awk -v k="$base_kib" 'BEGIN { printf "%.1f", k / 1024 }')) | manifest bytes: $(awk -v m="$mbytes" 'BEGIN { printf "%.1f MiB", m / 1048576 }') |")
    startup_rows+=("| memory per entry (RSS - empty - manifest bytes) / entries, B | $(median "${per_entry[@]}") (runs: ${per_entry[*]}) | goal <= 300 |")
    startup_rows+=("| page cache | $cold_method | |")
fi

# ---- report ---------------------------------------------------------------------
ratio_cells() { # TEST [inverse]: median of per-round ir/nginx, and the list
    local t=$1 a b i out=() ra rb
    read -ra ra <<<"${R[$t|$2]:-}"
    read -ra rb <<<"${R[$t|$3]:-}"
    for i in "${!ra[@]}"; do
        out+=("$(awk -v a="${ra[$i]}" -v b="${rb[$i]:-0}" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }')")
    done
    echo "**$(median "${out[@]}")** (${out[*]})"
}
cell() { local v=${R[$1|$2]:-}; [[ -z $v ]] && echo "-" || median $v; }

cat <<EOF
## ir-server, nginx and docker-registry side by side (\`bench/compare.sh\`)

Source: $rev. $ROUNDS rounds, server order rotated each round; medians over
the rounds, and the ratio ir-server / nginx per round (bold: median ratio;
for p99 latency lower is better, so a ratio at most 1.00 meets the goal).
wrk and ab run on the same 2 cores as the servers. $DURATION s per
measurement, $CONNS connections (Range: 4).

Machine:
$(machine_info)
- openssl speed -evp sha256, one core, 16 KiB blocks: $sha_mib MiB/s

| measure | ir-server | nginx | docker-registry | ir-server / nginx (per round) |
| --- | --- | --- | --- | --- |
EOF
row() { echo "| $1 | $(cell "$1" "$2") | $(cell "$1" "$3") | $(cell "$1" "${4:-none}") | $(ratio_cells "$1" "$2" "$3") |"; }
for t in "${TESTS_SMALL[@]}"; do
    row "$t" ir nginx registry
    row "$t p99 ms" ir nginx registry
done
row "$BIG_MIB MiB blob, 1 stream MiB/s" ir nginx registry
row "$BIG_MIB MiB blob, 4 streams MiB/s" ir nginx registry
row "1 MiB Range from the middle" ir nginx registry
row "1 MiB Range from the middle p99 ms" ir nginx registry
for t in "${TESTS_SMALL[@]}"; do
    row "TLS $t" ir-tls nginx-tls
    row "TLS $t p99 ms" ir-tls nginx-tls
done
row "TLS $BIG_MIB MiB blob, 1 stream MiB/s" ir-tls nginx-tls
row "TLS $BIG_MIB MiB blob, 4 streams MiB/s" ir-tls nginx-tls
row "TLS HTTP/1.1 $BIG_MIB MiB blob, 1 stream MiB/s" ir-tls nginx-tls
row "TLS HTTP/1.1 $BIG_MIB MiB blob, 4 streams MiB/s" ir-tls nginx-tls
row "TLS 1 MiB Range from the middle" ir-tls nginx-tls
row "TLS 1 MiB Range from the middle p99 ms" ir-tls nginx-tls
row "peak RSS MiB (small requests)" ir nginx registry
row "peak RSS MiB (whole run)" ir nginx registry
echo "| peak RSS MiB (whole run), ir-server TLS | $(cell "peak RSS MiB (whole run)" ir-tls) | | | |"
echo "| verified blob copies in memory (memfd, outside RSS when idle), MiB | $(cell "blob copies in memory MiB (after the rounds)" ir) | | | TLS: $(cell "blob copies in memory MiB (after the rounds)" ir-tls); bounded by --blob-cache |"
echo "| first $BIG_MIB MiB download after start (SHA-256, seal, copy to memory), MiB/s | $(cell "first $BIG_MIB MiB download after start (SHA-256, seal, copy to memory) MiB/s" ir) | | | once per blob and start; TLS: $(cell "first $BIG_MIB MiB download after start (SHA-256, seal, copy to memory) MiB/s" ir-tls) |"

echo "| manifest GET by tag, ir-server as a fraction of a minimal hyper server answering the same bytes from memory (bench/ceiling), req/s | $(cell "manifest GET, ir-server against the ceiling" ir) | ceiling: $(cell "manifest GET, ir-server against the ceiling" ceiling) | | $(ratio_cells "manifest GET, ir-server against the ceiling" ir ceiling); goal >= 0.9 |"
echo "| host steal (CPU time the hypervisor gave elsewhere), % per round | $(median "${ROUND_STEAL[@]}") | | | per round: ${ROUND_STEAL[*]}; the same for every server of a round |"

if ((${#startup_rows[@]})); then
    cat <<EOF

ir-server start-up ($STARTUP_RUNS runs, median; from exec to ready: sd_notify READY=1, the moment /readyz turns 200, waited for without polling):

| measure | value | note |
| --- | --- | --- |
$(printf '%s\n' "${startup_rows[@]}")
EOF
fi

cat <<EOF

Commands (URLs per server; the nginx tree mirrors the layouts with symbolic links):

- \`wrk -t2 -c$CONNS -d${DURATION}s --latency -H '$ACCEPT' URL/v2/$NAME/manifests/{$TAG,<digest>}\`, \`.../tags/list\`, \`URL/v2/_catalog\`
- \`ab -k -i -q -c $CONNS -t $DURATION -n 100000000 -e CSV URL/v2/$NAME/blobs/<64 KiB blob>\` (p99 from the CSV)
- \`curl -s [--http1.1] -o /dev/null URL/v2/$NAME/blobs/<$BIG_MIB MiB blob>\` (1 or 4 at once; MiB/s = bytes / wall time; without --http1.1 curl negotiates HTTP/2 with both TLS servers, each checked)
- \`wrk -t2 -c4 -d${DURATION}s --latency -H '$RANGE' URL/v2/$NAME/blobs/<$BIG_MIB MiB blob>\`
- peak RSS: \`echo 5 > /proc/PID/clear_refs\` before the small requests of a round, VmHWM after them (nginx: master + workers)
- ir-server: \`ir-server -r ROOT --bind 127.0.0.1 -p PORT --no-access-log [-t tls -c server.crt -k server.key]\`
- nginx: \`listen ... ssl http2\` on its TLS port (h2 and http/1.1 by ALPN, as ir-server)
EOF
if ((${#UNDER_LOAD[@]})); then
    echo
    echo "WARNING: measured under load:"
    printf -- '- %s\n' "${UNDER_LOAD[@]}"
else
    echo
    echo "Measured on a quiet machine (first check: $first_quiet; no compiler running, CPUs at most 25% busy and steal at most $QUIET_STEAL% (waited for up to ${QUIET_STEAL_WAIT}s) before each round)."
fi
