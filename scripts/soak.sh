#!/usr/bin/env bash
# Soak and leak test (issue 7): mixed load at saturation against ir-server
# over plain HTTP and TLS at once, for SOAK_SECONDS (default 600).
#
#   scripts/soak.sh                      the full 10 minutes
#   SOAK_SECONDS=120 scripts/soak.sh     a short run
#
# Load: wrk (one thread and SOAK_CONNS connections per server) with a Lua
# script that picks each request at random from a list: manifests by tag
# and by digest, tag lists, the catalog, whole blobs and ranged blob GETs,
# and 5% bad requests (invalid names, digests and tags: 400 by the spec).
# HEAD requests run beside it with `ab -k -i` (wrk hangs on HEAD answers
# that carry Content-Length). Everything targets 127.0.0.1 only.
#
# Pass criteria, printed at the end (exit 1 if any fails):
#   - zero failures on valid requests: only 200/206 for valid requests,
#     400 for the bad ones, no other status, no socket errors except
#     those wrk counts when it stops mid-request (timeouts count);
#   - the 400s match the bad requests sent (within the requests in flight);
#   - each server's peak RSS (VmHWM) at the end is within 10% of its
#     peak RSS after the first minute (or after 1/5 of a short run).
#
# Memory: VmRSS, VmHWM and thread count of both servers are sampled every
# 60 s (every SOAK_SECONDS/10 in runs shorter than 10 minutes; override
# with SOAK_SAMPLE_EVERY), printed as they are taken and again in the
# summary.
#
# Needs: wrk, ab (apache2-utils), curl, openssl, python3; builds the
# release binary unless IR_SERVER_BIN is set.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_CONNS=${SOAK_CONNS:-32}
FIRST=${SOAK_FIRST_SAMPLE:-$((SOAK_SECONDS < 300 ? SOAK_SECONDS / 5 : 60))}
SAMPLE_EVERY=${SOAK_SAMPLE_EVERY:-$((SOAK_SECONDS < 600 ? SOAK_SECONDS / 10 : 60))}
[ "$SAMPLE_EVERY" -ge 1 ] || SAMPLE_EVERY=1
BIN=${IR_SERVER_BIN:-$ROOT/target/release/ir-server}
REG=${SOAK_REGISTRY:-$ROOT/registry}

for tool in wrk ab curl openssl python3; do
  command -v "$tool" >/dev/null || { echo "soak.sh: $tool is required" >&2; exit 2; }
done
if [ -z "${IR_SERVER_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p ir-server)
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() {
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$@" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "soak.sh: no answer from $*" >&2
  return 1
}
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

"$ROOT/scripts/make-dev-cert.sh" "$WORK/certs" >/dev/null
HTTP_PORT=$(free_port)
TLS_PORT=$(free_port)
"$BIN" -r "$REG" -p "$HTTP_PORT" --bind 127.0.0.1 --no-access-log >"$WORK/http.log" 2>&1 &
HTTP_PID=$!
PIDS+=("$HTTP_PID")
"$BIN" -r "$REG" -p "$TLS_PORT" --bind 127.0.0.1 --no-access-log -t tls \
  -c "$WORK/certs/server.crt" -k "$WORK/certs/server.key" >"$WORK/tls.log" 2>&1 &
TLS_PID=$!
PIDS+=("$TLS_PID")
wait_http "http://127.0.0.1:$HTTP_PORT/v2/"
wait_http --cacert "$WORK/certs/ca.crt" "https://localhost:$TLS_PORT/v2/"

# ---- the request list, from what the registry serves --------------------
REQS="$WORK/requests.txt" # one "METHOD PATH [RANGE]" per line; bad ones prefixed "BAD"
python3 - "$REG" "$HTTP_PORT" >"$REQS" <<'PY'
import json, sys, urllib.request
reg, port = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
def get(path, accept=None):
    req = urllib.request.Request(base + path)
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req) as r:
        return r.read(), r.headers
ACCEPT = ",".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])
valid, blobs = [], []
repos = json.loads(get("/v2/_catalog")[0])["repositories"]
valid.append("GET /v2/_catalog")
valid.append("GET /v2/")
for repo in repos:
    valid.append(f"GET /v2/{repo}/tags/list")
    tags = json.loads(get(f"/v2/{repo}/tags/list")[0])["tags"] or []
    seen = set()
    todo = [t for t in tags]
    while todo:
        ref = todo.pop()
        body, headers = get(f"/v2/{repo}/manifests/{ref}", ACCEPT)
        digest = headers["Docker-Content-Digest"]
        valid.append(f"GET /v2/{repo}/manifests/{ref}")
        if digest in seen:
            continue
        seen.add(digest)
        valid.append(f"GET /v2/{repo}/manifests/{digest}")
        doc = json.loads(body)
        for m in doc.get("manifests", []):
            todo.append(m["digest"])
        for b in [doc.get("config")] + doc.get("layers", []):
            if b and b.get("size", 0) > 0:
                blobs.append((repo, b["digest"], b["size"]))
for repo, digest, size in blobs:
    valid.append(f"GET /v2/{repo}/blobs/{digest}")
    valid.append(f"GET /v2/{repo}/blobs/{digest} bytes=0-{min(size, 4096) - 1}")
    valid.append(f"GET /v2/{repo}/blobs/{digest} bytes=-{max(1, size // 2)}")
bad = [
    "BAD GET /v2/Hello/manifests/latest",          # upper-case name
    "BAD GET /v2/hello/manifests/not%20a%20tag",   # invalid tag
    "BAD GET /v2/hello/blobs/sha256:XYZ",          # invalid digest
    "BAD GET /v2/hello/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
    "BAD GET /v2/a..b/tags/list",
]
# 95 % valid, 5 % bad: weight by repetition.
lines = valid * (19 * len(bad)) + bad * len(valid)
print("\n".join(lines))
PY
N_VALID=$(grep -vc '^BAD' "$REQS")
N_BAD=$(grep -c '^BAD' "$REQS")
echo "== soak: ${SOAK_SECONDS}s, $SOAK_CONNS connections per server, $(sort -u "$REQS" | wc -l) distinct requests, $((100 * N_BAD / (N_VALID + N_BAD)))% bad"

cat >"$WORK/mix.lua" <<'LUA'
-- Picks requests at random from REQS; counts statuses per class.
local reqs, bad = {}, {}
counts = { sent_bad = 0, ok = 0, s400 = 0, other = 0 } -- globals: read by done() via thread:get
others = {}
function init(args)
  local i = 0
  for line in io.lines(os.getenv("SOAK_REQS")) do
    local isbad = line:sub(1, 4) == "BAD "
    if isbad then line = line:sub(5) end
    local method, path, range = line:match("^(%S+) (%S+) ?(%S*)$")
    local headers = { ["Accept"] = "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.docker.distribution.manifest.v2+json" }
    if range ~= "" then headers["Range"] = range end
    i = i + 1
    reqs[i] = wrk.format(method, path, headers)
    bad[i] = isbad
  end
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 100000)
end
function request()
  local i = math.random(#reqs)
  if bad[i] then counts.sent_bad = counts.sent_bad + 1 end
  return reqs[i]
end
function response(status, headers, body)
  if status == 200 or status == 206 then
    counts.ok = counts.ok + 1
  elseif status == 400 then
    counts.s400 = counts.s400 + 1
  else
    counts.other = counts.other + 1
    others[status] = (others[status] or 0) + 1
  end
end
function done(summary, latency, requests)
  -- wrk runs done() in the main state; thread counters are fetched there.
  local t = { sent_bad = 0, ok = 0, s400 = 0, other = 0 }
  local st = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for k, v in pairs(c) do t[k] = t[k] + v end
    for k, v in pairs(thread:get("others") or {}) do st[k] = (st[k] or 0) + v end
  end
  local o = ""
  for k, v in pairs(st) do o = o .. k .. "=" .. v .. " " end
  io.write(string.format("SOAK requests=%d ok=%d s400=%d sent_bad=%d other=%d others=[%s] errors_connect=%d errors_read=%d errors_write=%d errors_timeout=%d errors_status=%d p50_ms=%.2f p99_ms=%.2f rps=%.0f\n",
    summary.requests, t.ok, t.s400, t.sent_bad, t.other, o,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6)))
end
threads = {}
function setup(thread)
  table.insert(threads, thread)
end
LUA
export SOAK_REQS="$REQS"

# ---- load -----------------------------------------------------------------
wrk -t1 -c"$SOAK_CONNS" -d"${SOAK_SECONDS}s" --timeout 10s -s "$WORK/mix.lua" \
  "http://127.0.0.1:$HTTP_PORT" >"$WORK/wrk-http.txt" 2>&1 &
WRK_HTTP=$!
wrk -t1 -c"$SOAK_CONNS" -d"${SOAK_SECONDS}s" --timeout 10s -s "$WORK/mix.lua" \
  "https://localhost:$TLS_PORT" >"$WORK/wrk-tls.txt" 2>&1 &
WRK_TLS=$!
PIDS+=("$WRK_HTTP" "$WRK_TLS")

# HEADs beside wrk, in rounds until the end: a manifest and a blob.
HEAD_MANIFEST=$(grep -m1 '^GET /v2/[^ ]*/manifests/sha256' "$REQS" | cut -d' ' -f2)
HEAD_BLOB=$(grep -m1 '^GET /v2/[^ ]*/blobs/[^ ]*$' "$REQS" | cut -d' ' -f2)
(
  end=$((SECONDS + SOAK_SECONDS))
  while [ "$SECONDS" -lt "$end" ]; do
    for u in "http://127.0.0.1:$HTTP_PORT$HEAD_MANIFEST" "http://127.0.0.1:$HTTP_PORT$HEAD_BLOB" \
      "https://127.0.0.1:$TLS_PORT$HEAD_BLOB"; do
      ab -q -k -i -n 2000 -c 4 "$u" 2>&1 | awk '/^(Complete|Failed|Non-2xx)/' | sed "s|^|$u |"
    done
  done
) >"$WORK/ab.txt" &
AB=$!
PIDS+=("$AB")

# ---- memory samples ---------------------------------------------------------
# One line per sample, every SAMPLE_EVERY seconds and at FIRST, so growth
# over time is visible; the verdict still compares VmHWM at FIRST with the
# end.
SAMPLES=()
sample() { # sample LABEL
  local line
  line=$(printf '%-7s http VmRSS %6s kB VmHWM %6s kB threads %3s | tls VmRSS %6s kB VmHWM %6s kB threads %3s' "$1" \
    "$(kib "$HTTP_PID" VmRSS)" "$(kib "$HTTP_PID" VmHWM)" "$(kib "$HTTP_PID" Threads)" \
    "$(kib "$TLS_PID" VmRSS)" "$(kib "$TLS_PID" VmHWM)" "$(kib "$TLS_PID" Threads)")
  SAMPLES+=("$line")
  echo "sample $line"
}
START=$(date +%s)
sample "0s"
for t in $( (seq "$SAMPLE_EVERY" "$SAMPLE_EVERY" $((SOAK_SECONDS - 1)); echo "$FIRST") | sort -nu); do
  [ "$t" -lt "$SOAK_SECONDS" ] || continue
  delay=$((START + t - $(date +%s)))
  [ "$delay" -le 0 ] || sleep "$delay"
  sample "${t}s"
  if [ "$t" -eq "$FIRST" ]; then
    H1_HWM=$(kib "$HTTP_PID" VmHWM)
    T1_HWM=$(kib "$TLS_PID" VmHWM)
  fi
done
if [ -z "${H1_HWM:-}" ]; then # FIRST >= SOAK_SECONDS
  delay=$((START + FIRST - $(date +%s)))
  [ "$delay" -le 0 ] || sleep "$delay"
  sample "${FIRST}s"
  H1_HWM=$(kib "$HTTP_PID" VmHWM)
  T1_HWM=$(kib "$TLS_PID" VmHWM)
fi
wait "$WRK_HTTP" || true
wait "$WRK_TLS" || true
wait "$AB" 2>/dev/null || true
sample "end"
H2_HWM=$(kib "$HTTP_PID" VmHWM)
T2_HWM=$(kib "$TLS_PID" VmHWM)

# ---- verdict ----------------------------------------------------------------
echo "memory samples (every ${SAMPLE_EVERY}s; the verdict compares VmHWM at ${FIRST}s with the end):"
printf '  %s\n' "${SAMPLES[@]}"
fail=0
for kind in http tls; do
  line=$(grep '^SOAK ' "$WORK/wrk-$kind.txt" || true)
  if [ -z "$line" ]; then
    echo "FAIL $kind: wrk produced no summary"; cat "$WORK/wrk-$kind.txt"; fail=1; continue
  fi
  echo "$kind: ${line#SOAK }"
  get() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
  other=$(get other); s400=$(get s400); sent_bad=$(get sent_bad)
  errs=$(( $(get errors_read) + $(get errors_write) + $(get errors_timeout) + $(get errors_connect) ))
  [ "$other" -eq 0 ] || { echo "FAIL $kind: $other responses with an unexpected status"; fail=1; }
  # wrk stops with up to one request in flight per connection.
  [ "$s400" -le "$sent_bad" ] && [ "$s400" -ge $((sent_bad - SOAK_CONNS)) ] \
    || { echo "FAIL $kind: $s400 answers of 400 for $sent_bad bad requests"; fail=1; }
  [ "$errs" -le "$SOAK_CONNS" ] || { echo "FAIL $kind: $errs socket errors"; fail=1; }
done
head_failed=$(awk '/Failed requests/ { s += $NF } END { print s + 0 }' "$WORK/ab.txt")
head_non2xx=$(awk '/Non-2xx/ { s += $NF } END { print s + 0 }' "$WORK/ab.txt")
head_done=$(awk '/Complete requests/ { s += $NF } END { print s + 0 }' "$WORK/ab.txt")
echo "HEAD (ab -k -i): $head_done complete, $head_failed failed, $head_non2xx non-2xx"
[ "$head_non2xx" -eq 0 ] && [ "$head_done" -gt 0 ] || { echo "FAIL HEAD"; fail=1; }
for pair in "http $H1_HWM $H2_HWM" "tls $T1_HWM $T2_HWM"; do
  set -- $pair
  if [ "$3" -gt $(( $2 * 110 / 100 )) ]; then
    echo "FAIL $1: peak RSS grew from $2 kB to $3 kB (> 10%)"; fail=1
  else
    echo "ok   $1: peak RSS $2 kB after ${FIRST}s, $3 kB after ${SOAK_SECONDS}s (+$(( ($3 - $2) * 100 / $2 ))%)"
  fi
done
kill -0 "$HTTP_PID" && kill -0 "$TLS_PID" || { echo "FAIL: a server died"; fail=1; }
[ "$fail" -eq 0 ] && echo "soak: passed" || echo "soak: FAILED"
exit "$fail"
