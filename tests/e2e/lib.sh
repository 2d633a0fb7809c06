# Shared helpers for the end-to-end scripts: a work directory cleaned up
# on exit with every process started, a results counter, a free port, and
# starting ir-server with readiness polling (no sleeps as synchronisation).
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
