#!/usr/bin/env bash
# The cost of authentication and delivery receipts on the manifest path,
# end to end: `wrk` GETs one manifest by tag over TLS (keep-alive) from
#   off       -t tls
#   auth      -t tls --htpasswd, a bearer token from /token on every request
#   receipts  the same plus --receipts (a signed receipt per manifest)
# ROUNDS rounds, the variants alternating within each; medians and the
# ratios auth/off (goal >= 0.90) and receipts/auth (goal >= 0.95).
#
#   bash bench/audit.sh            (ROUNDS=3 DURATION=5 CONNS=32)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/lib.sh"
: "${ROUNDS:=3}" "${DURATION:=5}" "${CONNS:=32}" "${QUIET_MAX_WAIT:=60}"
for tool in wrk htpasswd openssl curl; do
  command -v "$tool" >/dev/null || { echo "audit.sh needs $tool" >&2; exit 2; }
done
cargo build --release -q -p ir-server --manifest-path "$ROOT/Cargo.toml"
BIN=$ROOT/target/release/ir-server
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
bash "$ROOT/scripts/make-dev-cert.sh" "$WORK/certs" >/dev/null 2>&1
htpasswd -Bbc "$WORK/htpasswd" bench secret >/dev/null 2>&1
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null \
  | openssl pkcs8 -topk8 -nocrypt -out "$WORK/receipts.key"
mkdir -m 700 "$WORK/journal"
PORT=$((20000 + RANDOM % 20000))
PATH_=/v2/hello/manifests/latest

start() { # VARIANT
  local extra=()
  case $1 in
    auth) extra=(--htpasswd "$WORK/htpasswd") ;;
    receipts) extra=(--htpasswd "$WORK/htpasswd" --receipts "$WORK/journal" --receipts-key "$WORK/receipts.key") ;;
  esac
  "$BIN" -t tls -c "$WORK/certs/server.crt" -k "$WORK/certs/server.key" -r "$ROOT/registry" \
    -p "$PORT" --bind 127.0.0.1 --no-access-log --registry-host "127.0.0.1:$PORT" "${extra[@]}" \
    >"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do
    curl -sk -o /dev/null "https://127.0.0.1:$PORT/healthz" && return 0
    sleep 0.1
  done
  cat "$WORK/server.log" >&2; exit 1
}

measure() { # VARIANT -> req/s
  local header=()
  if [[ $1 != off ]]; then
    local token
    token=$(curl -sk -u bench:secret "https://127.0.0.1:$PORT/token?service=127.0.0.1:$PORT&scope=repository:hello:pull" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    header=(-H "Authorization: Bearer $token")
  fi
  curl -sfk "${header[@]}" -o /dev/null "https://127.0.0.1:$PORT$PATH_" || { echo "$1: request refused" >&2; exit 1; }
  wrk -t2 -c"$CONNS" -d"${DURATION}s" "${header[@]}" "https://127.0.0.1:$PORT$PATH_" \
    | awk '/Requests\/sec/ {print $2}'
}

declare -A RUNS
for round in $(seq "$ROUNDS"); do
  for variant in off auth receipts; do
    start "$variant"
    wait_quiet "round $round $variant"
    rps=$(measure "$variant")
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
    RUNS[$variant]+="$rps "
    log "round $round $variant: $rps req/s"
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| variant | runs (req/s) | median |"
echo "| --- | --- | --- |"
for variant in off auth receipts; do
  echo "| $variant | ${RUNS[$variant]}| $(echo "${RUNS[$variant]}" | median) |"
done
off=$(echo "${RUNS[off]}" | median); auth=$(echo "${RUNS[auth]}" | median); rec=$(echo "${RUNS[receipts]}" | median)
awk -v o="$off" -v a="$auth" -v r="$rec" 'BEGIN { printf "auth/off %.2f (goal >= 0.90), receipts/auth %.2f (goal >= 0.95)\n", a/o, r/a }'
echo "receipts written: $(cat "$WORK"/journal/*.jsonl | grep -c '"type":"delivery"')"
if ((${#UNDER_LOAD[@]})); then echo "measured under load: ${UNDER_LOAD[*]}"; fi
