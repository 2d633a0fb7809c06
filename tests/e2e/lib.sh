# Shared helpers for the end-to-end scripts: a work directory cleaned up
# on exit with every process started, a results counter, a free port,
# starting ir-server with readiness polling (no sleeps as synchronisation),
# and a CNCF distribution registry (Debian's docker-registry) over TLS as a
# source registry.
#
# A script sets ROOT, then sources this file, which sets WORK (a fresh
# temporary directory), E2E_LOG, REG (the example registry), BIN (the
# server binary) and PIDS, and installs the cleanup trap.

WORK=$(mktemp -d)
E2E_LOG=${E2E_LOG:-$WORK/log}
export E2E_LOG
REG=$ROOT/registry
BIN=${IR_SERVER_BIN:-$ROOT/target/debug/ir-server}
PIDS=()
e2e_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap e2e_cleanup EXIT

E2E_PASS=0
E2E_FAIL=0

# check NAME CMD...: runs CMD, counts and prints the result.
check() {
  local name=$1
  shift
  if "$@" >>"$E2E_LOG" 2>&1; then
    E2E_PASS=$((E2E_PASS + 1))
    echo "ok   $name"
  else
    E2E_FAIL=$((E2E_FAIL + 1))
    echo "FAIL $name (see $E2E_LOG)"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL [CURL-ARGS...]: polls until the URL answers (20 s at most).
wait_http() {
  local url=$1
  shift
  for _ in $(seq 1 200); do
    if curl -fsS -o /dev/null "$@" "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "no answer from $url" >&2
  return 1
}

# summary LABEL: prints the closing line and returns non-zero on failures.
summary() {
  echo "$1: $E2E_PASS passed, $E2E_FAIL failed"
  [ "$E2E_FAIL" -eq 0 ]
}

# start_server LOG ARGS...: starts ir-server ($BIN) in the background with
# ARGS, records its pid in SERVER_PID and in PIDS (for cleanup).
start_server() {
  local log=$1
  shift
  "$BIN" "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
}

# CNCF distribution (Debian's docker-registry) as a source registry ---------

# distribution_credentials: a dev CA and server certificate in CERTS
# ($WORK/certs; the CA also in $WORK/cadir, skopeo's --dest-cert-dir), and
# an htpasswd file ($WORK/htpasswd, bcrypt) for USER_NAME with PASSWORD.
distribution_credentials() {
  CERTS=$WORK/certs
  "$ROOT/scripts/make-dev-cert.sh" "$CERTS" >>"$E2E_LOG"
  mkdir -p "$WORK/cadir" && cp "$CERTS/ca.crt" "$WORK/cadir/"
  USER_NAME=alice
  PASSWORD='e2e-S3cret-pw'
  htpasswd -Bbn "$USER_NAME" "$PASSWORD" >"$WORK/htpasswd" 2>>"$E2E_LOG"
}

# The `auth:` section for htpasswd Basic auth with distribution_credentials.
DISTRIBUTION_HTPASSWD_AUTH="  htpasswd:
    realm: e2e
    path: $WORK/htpasswd"

# start_distribution NAME ADDR AUTH: starts docker-registry serving TLS
# ($CERTS/server.crt) on ADDR, storing in $WORK/NAME-store, AUTH the YAML
# lines under its `auth:`; config $WORK/NAME.yml, log $WORK/NAME.log, pid
# in PIDS. Returns when /v2/ answers 401 (it asks for credentials: ready),
# non-zero if it has not after 20 s.
start_distribution() {
  local name=$1 addr=$2 auth=$3 code
  cat >"$WORK/$name.yml" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $WORK/$name-store
http:
  addr: $addr
  tls:
    certificate: $CERTS/server.crt
    key: $CERTS/server.key
auth:
$auth
YAML
  docker-registry serve "$WORK/$name.yml" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CERTS/ca.crt" "https://$addr/v2/")
    [ "$code" = 401 ] && return 0
    sleep 0.1
  done
  echo "docker-registry on $addr did not ask for credentials (see $WORK/$name.log)" >&2
  return 1
}
