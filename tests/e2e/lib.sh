# Shared helpers for the end-to-end scripts: a results counter, a free
# port, and starting/stopping ir-server with readiness polling (no sleeps
# as synchronisation).

E2E_PASS=0
E2E_FAIL=0
E2E_LOG=${E2E_LOG:-/dev/null}

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
