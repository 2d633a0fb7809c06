#!/usr/bin/env bash
# Scale-out behind haproxy: 3 ir-server replicas on 127.0.0.1 serving the
# same registry/, and haproxy (started here with a generated config, bound
# to 127.0.0.1 only) in three modes:
#
#   (a) HTTP mode in front of plain-HTTP replicas;
#   (b) TLS-terminating HTTP mode (haproxy holds the certificate), plain
#       HTTP to the same replicas;
#   (c) TCP pass-through to TLS replicas (-t tls): the TLS session ends in
#       ir-server, as RA-TLS needs for attestation to reach the server.
#       Health checks use the metrics listener's /readyz, since an RA-TLS
#       API port only talks to attested clients.
#   (d) TCP mode with the PROXY protocol (send-proxy-v2 to a plain replica,
#       send-proxy to a TLS one, both --proxy-protocol --proxy-protocol-from
#       127.0.0.1): pulls work, the access log names the real client, a
#       direct connection without a header is refused, and so is one with a
#       header of its own from an address not listed (127.0.0.2).
#
# In modes (a) to (c): a skopeo copy through the balancer keeps the source digest;
# haproxy's health checks on /readyz see every replica up; a replica
# stopped with SIGTERM during ~30 pulls fails none of them (and haproxy
# marks it down); and a rolling reload (SIGHUP to each replica in turn)
# during ~30 pulls fails none of them.
#
# Usage: tests/e2e/haproxy.sh   (needs: haproxy skopeo jq curl openssl python3)
# Env:   IR_SERVER_BIN  server binary (default target/debug/ir-server)
#        PULLS          pulls per series (default 30)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PULLS=${PULLS:-30}
. "$ROOT/tests/e2e/lib.sh"

for tool in haproxy skopeo jq curl openssl python3; do
  command -v "$tool" >/dev/null || { echo "haproxy: needs $tool"; exit 1; }
done

CERTS=$WORK/certs
"$ROOT/scripts/make-dev-cert.sh" "$CERTS" >>"$E2E_LOG"
mkdir -p "$WORK/skopeo-certs" && cp "$CERTS/ca.crt" "$WORK/skopeo-certs/"
cat "$CERTS/server.crt" "$CERTS/server.key" >"$WORK/haproxy.pem"
SOURCE=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="latest") | .digest' "$REG/hello/index.json" | head -1)

# Replicas ---------------------------------------------------------------
# Plain replicas p1..p3 (modes a and b) and TLS replicas t1..t3 (mode c),
# each with a metrics listener. REPLICA_PID[name] is the running process.
declare -A PORT METRICS REPLICA_PID
for name in p1 p2 p3 t1 t2 t3 x1 x2; do
  PORT[$name]=$(free_port)
  METRICS[$name]=$(free_port)
done

start_replica() { # NAME
  local name=$1 args=(--no-access-log)
  case $name in
    t*) args+=(-t tls -c "$CERTS/server.crt" -k "$CERTS/server.key") ;;
    # (d) PROXY protocol replicas keep their access log: it must name the
    # client, not haproxy. x1: plain HTTP (v2 header), x2: TLS (v1 header).
    x1) args=(--proxy-protocol --proxy-protocol-from 127.0.0.1) ;;
    x2) args=(--proxy-protocol --proxy-protocol-from 127.0.0.1/32 -t tls -c "$CERTS/server.crt" -k "$CERTS/server.key") ;;
  esac
  start_server "$WORK/$name.log" "${args[@]}" -r "$REG" -p "${PORT[$name]}" --bind 127.0.0.1 \
    --metrics-addr "127.0.0.1:${METRICS[$name]}" --shutdown-grace 10
  REPLICA_PID[$name]=$SERVER_PID
  wait_http "http://127.0.0.1:${METRICS[$name]}/readyz" || { cat "$WORK/$name.log"; return 1; }
}

for name in p1 p2 p3 t1 t2 t3 x1 x2; do
  start_replica "$name" || exit 1
done

# haproxy ----------------------------------------------------------------
FE_HTTP=$(free_port)
FE_HTTPS=$(free_port)
FE_TCP=$(free_port)
FE_PP2=$(free_port)
FE_PP1=$(free_port)
SOCK=$WORK/haproxy.sock
cat >"$WORK/haproxy.cfg" <<EOF
global
    stats socket $SOCK mode 600 level admin
    maxconn 2000

defaults
    timeout connect 2s
    timeout client  60s
    timeout server  60s
    timeout check   2s
    # A connection refused by a stopping replica is retried on another.
    retries 3
    option redispatch
    default-server inter 300ms fall 2 rise 2

# (a) HTTP mode, plain HTTP on both sides.
frontend fe_http
    mode http
    bind 127.0.0.1:$FE_HTTP
    default_backend be_plain

# (b) TLS terminated by haproxy, plain HTTP to the replicas.
frontend fe_https
    mode http
    bind 127.0.0.1:$FE_HTTPS ssl crt $WORK/haproxy.pem alpn h2,http/1.1
    http-request set-header X-Forwarded-Proto https
    default_backend be_plain

backend be_plain
    mode http
    balance roundrobin
    option forwardfor
    option httpchk GET /readyz
    http-check expect status 200
    # Pulls are GET/HEAD: safe to replay when a replica closes a
    # keep-alive connection as it shuts down.
    retry-on all-retryable-errors
    server p1 127.0.0.1:${PORT[p1]} check
    server p2 127.0.0.1:${PORT[p2]} check
    server p3 127.0.0.1:${PORT[p3]} check

# (c) TCP pass-through: TLS (or RA-TLS) ends in ir-server. Health checks
# go to each replica's metrics listener.
frontend fe_tcp
    mode tcp
    bind 127.0.0.1:$FE_TCP
    default_backend be_tls

backend be_tls
    mode tcp
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    server t1 127.0.0.1:${PORT[t1]} check port ${METRICS[t1]}
    server t2 127.0.0.1:${PORT[t2]} check port ${METRICS[t2]}
    server t3 127.0.0.1:${PORT[t3]} check port ${METRICS[t3]}

# (d) TCP mode with the PROXY protocol: the replicas (--proxy-protocol)
# see the real client. v2 to a plain replica, v1 to a TLS one.
frontend fe_pp2
    mode tcp
    bind 127.0.0.1:$FE_PP2
    default_backend be_pp2

backend be_pp2
    mode tcp
    option httpchk GET /readyz
    http-check expect status 200
    server x1 127.0.0.1:${PORT[x1]} send-proxy-v2 check port ${METRICS[x1]}

frontend fe_pp1
    mode tcp
    bind 127.0.0.1:$FE_PP1
    default_backend be_pp1

backend be_pp1
    mode tcp
    option httpchk GET /readyz
    http-check expect status 200
    server x2 127.0.0.1:${PORT[x2]} send-proxy check port ${METRICS[x2]}
EOF
check "haproxy accepts the generated configuration" haproxy -c -f "$WORK/haproxy.cfg"
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=("$!")

# status BACKEND SERVER: haproxy's view of a server (UP, DOWN, ...).
status() {
  python3 - "$SOCK" "$1" "$2" <<'PY'
import csv, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
rows = csv.reader(data.decode().lstrip("# ").splitlines())
head = next(rows)
for row in rows:
    r = dict(zip(head, row))
    if r.get("pxname") == sys.argv[2] and r.get("svname") == sys.argv[3]:
        print(r["status"].split()[0])
PY
}
# wait_status BACKEND SERVER STATE: polls haproxy (10 s at most).
wait_status() {
  for _ in $(seq 1 100); do
    [ "$(status "$1" "$2" 2>/dev/null)" = "$3" ] && return 0
    sleep 0.1
  done
  echo "$1/$2 is $(status "$1" "$2" 2>/dev/null), not $3" >&2
  return 1
}
all_up() { # BACKEND SERVERS...
  local be=$1
  shift
  for s in "$@"; do wait_status "$be" "$s" UP || return 1; done
}

wait_http "http://127.0.0.1:$FE_HTTP/v2/" || { cat "$WORK/haproxy.log"; exit 1; }
check "health checks on /readyz: every plain replica up" all_up be_plain p1 p2 p3
check "health checks on the metrics port's /readyz: every TLS replica up" all_up be_tls t1 t2 t3
check "health checks of the PROXY protocol replicas (v2): up" all_up be_pp2 x1
check "health checks of the PROXY protocol replicas (v1): up" all_up be_pp1 x2

# Pulls ------------------------------------------------------------------
# pull MODE DIR: one skopeo copy of hello:latest through the balancer.
pull() {
  local mode=$1 dir=$2
  rm -rf "$dir"
  case $mode in
    http) skopeo copy --all --quiet --src-tls-verify=false "docker://127.0.0.1:$FE_HTTP/hello:latest" "oci:$dir:latest" ;;
    https) skopeo copy --all --quiet --src-cert-dir "$WORK/skopeo-certs" "docker://localhost:$FE_HTTPS/hello:latest" "oci:$dir:latest" ;;
    # TCP pass-through: haproxy cannot retry a connection that a stopping
    # replica's kernel had already accepted into its backlog when the
    # replica closed its listener; that one connection is reset, and the
    # client retries it once (HTTP and TLS-terminating modes need no retry:
    # haproxy redispatches those itself).
    tcp) skopeo copy --all --quiet --retry-times 1 --src-cert-dir "$WORK/skopeo-certs" "docker://localhost:$FE_TCP/hello:latest" "oci:$dir:latest" ;;
  esac
}
same_digest() { # DIR
  [ "$(jq -r '.manifests[0].digest' "$1/index.json")" = "$SOURCE" ]
}
pull_and_compare() { # MODE
  pull "$1" "$WORK/pull-$1" && same_digest "$WORK/pull-$1"
}

# series MODE COUNT RESULT: COUNT pulls in a row, then writes
# "<ok> <failed>" to RESULT. Progress is in RESULT.n.
series() {
  local mode=$1 count=$2 result=$3 ok=0 failed=0 i
  for i in $(seq 1 "$count"); do
    if pull "$mode" "$WORK/series-$mode" >>"$E2E_LOG" 2>&1 && same_digest "$WORK/series-$mode"; then
      ok=$((ok + 1))
    else
      failed=$((failed + 1))
      echo "pull $i of $count through $mode failed" >>"$E2E_LOG"
    fi
    echo "$i" >"$result.n"
  done
  echo "$ok $failed" >"$result"
}
wait_progress() { # RESULT N: until the series did N pulls (60 s at most)
  for _ in $(seq 1 600); do
    [ "$(cat "$1.n" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
all_pulled() { # RESULT COUNT: the series ended with COUNT ok and 0 failed
  [ "$(cat "$1" 2>/dev/null)" = "$2 0" ] || { echo "series $1: $(cat "$1" 2>/dev/null) (ok failed)" >&2; return 1; }
}
exited_cleanly() { # PID: the process ended with status 0
  wait "$1"
}
reloads_of() { grep -c 'reload:' "$WORK/$1.log"; }
wait_reload() { # NAME COUNT: until the replica logged more than COUNT reloads
  for _ in $(seq 1 100); do
    [ "$(reloads_of "$1")" -gt "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

# stop_during_pulls MODE BACKEND VICTIM OTHERS...
stop_during_pulls() {
  local mode=$1 be=$2 victim=$3 result=$WORK/stop-$1
  series "$mode" "$PULLS" "$result" &
  local series_pid=$!
  wait_progress "$result" 5
  local pid=${REPLICA_PID[$victim]}
  kill -TERM "$pid"
  check "($mode) SIGTERM to $victim: haproxy marks it down" wait_status "$be" "$victim" DOWN
  check "($mode) $victim exits 0 after its requests finished" exited_cleanly "$pid"
  wait "$series_pid"
  check "($mode) $PULLS pulls while $victim stopped: none failed" all_pulled "$result" "$PULLS"
  start_replica "$victim" >>"$E2E_LOG" 2>&1
  check "($mode) $victim restarted and back up in haproxy" wait_status "$be" "$victim" UP
}

# rolling_reload MODE REPLICAS...
rolling_reload() {
  local mode=$1 result=$WORK/reload-$1 name before
  shift
  series "$mode" "$PULLS" "$result" &
  local series_pid=$!
  for name in "$@"; do
    wait_progress "$result" $(( $(cat "$result.n" 2>/dev/null || echo 0) + 3 ))
    before=$(reloads_of "$name")
    kill -HUP "${REPLICA_PID[$name]}"
    check "($mode) rolling reload: $name reloaded on SIGHUP" wait_reload "$name" "$before"
  done
  wait "$series_pid"
  check "($mode) $PULLS pulls during a rolling reload: none failed" all_pulled "$result" "$PULLS"
}

# (a) HTTP mode -----------------------------------------------------------
check "(http) skopeo copy through haproxy keeps the source digest" pull_and_compare http
check "(http) requests are spread over the replicas" \
  bash -c "for i in 1 2 3 4 5 6; do curl -fsS -o /dev/null http://127.0.0.1:$FE_HTTP/v2/hello/manifests/latest || exit 1; done
           for m in ${METRICS[p1]} ${METRICS[p2]} ${METRICS[p3]}; do
             curl -fsS http://127.0.0.1:\$m/metrics | grep -q '^ir_server_http_requests_total{endpoint=\"manifest\",method=\"GET\",status=\"200\"}' || exit 1
           done"
stop_during_pulls http be_plain p1
rolling_reload http p1 p2 p3

# (b) TLS terminated by haproxy ------------------------------------------
check "(https) skopeo copy through TLS-terminating haproxy keeps the source digest" pull_and_compare https
check "(https) haproxy presents the certificate, h2 via ALPN" \
  bash -c "[ \"\$(curl -fsS --http2 --cacert $CERTS/ca.crt -o /dev/null -w '%{http_version}' https://localhost:$FE_HTTPS/v2/)\" = 2 ]"
stop_during_pulls https be_plain p2
rolling_reload https p1 p2 p3

# (c) TCP pass-through to TLS replicas -----------------------------------
check "(tcp) skopeo copy through TCP pass-through keeps the source digest" pull_and_compare tcp
check "(tcp) the TLS session ends in ir-server (h2 via ALPN, issued by the dev CA)" \
  bash -c "[ \"\$(curl -fsS --http2 --cacert $CERTS/ca.crt -o /dev/null -w '%{http_version}' https://localhost:$FE_TCP/v2/)\" = 2 ]"
stop_during_pulls tcp be_tls t3
rolling_reload tcp t1 t2 t3

# (d) PROXY protocol ---------------------------------------------------------
# logged_client NAME PORT: the replica's access log names 127.0.0.1:PORT,
# the port curl connected from (haproxy's own ports differ).
logged_client() {
  for _ in $(seq 1 50); do
    grep 'access' "$WORK/$1.log" | grep -q "127.0.0.1:$2" && return 0
    sleep 0.1
  done
  return 1
}
check "(proxy v2) skopeo copy through send-proxy-v2 keeps the source digest" \
  bash -c "rm -rf $WORK/pull-pp2; skopeo copy --all --quiet --src-tls-verify=false docker://127.0.0.1:$FE_PP2/hello:latest oci:$WORK/pull-pp2:latest \
           && [ \"\$(jq -r '.manifests[0].digest' $WORK/pull-pp2/index.json)\" = $SOURCE ]"
CLIENT_PORT=$(free_port)
curl -fsS -o /dev/null --local-port "$CLIENT_PORT" "http://127.0.0.1:$FE_PP2/v2/hello/manifests/latest" >>"$E2E_LOG" 2>&1
check "(proxy v2) the access log names the client's address, not haproxy's" logged_client x1 "$CLIENT_PORT"
CLIENT_PORT=$(free_port)
curl -fsS -o /dev/null --cacert "$CERTS/ca.crt" --local-port "$CLIENT_PORT" "https://localhost:$FE_PP1/v2/hello/tags/list" >>"$E2E_LOG" 2>&1
check "(proxy v1, TLS) the access log names the client's address" logged_client x2 "$CLIENT_PORT"
check "(proxy) a direct connection without a PROXY header is refused" \
  bash -c "! curl -fsS -m 5 -o /dev/null http://127.0.0.1:${PORT[x1]}/v2/ && grep -q 'PROXY protocol' $WORK/x1.log"
# curl --haproxy-protocol names curl's own address (127.0.0.2) in the header.
check "(proxy) a header from an address not in --proxy-protocol-from is refused, and never logged as the client" \
  bash -c "! curl -fsS -m 5 -o /dev/null --interface 127.0.0.2 --haproxy-protocol http://127.0.0.1:${PORT[x1]}/v2/ \
           && grep -q 'not in --proxy-protocol-from' $WORK/x1.log && ! grep 'access' $WORK/x1.log | grep -q '127.0.0.2'"

if [ "$E2E_FAIL" -ne 0 ]; then
  echo "--- log"; tail -n 60 "$E2E_LOG"
  echo "--- haproxy"; tail -n 20 "$WORK/haproxy.log"
fi
summary haproxy
