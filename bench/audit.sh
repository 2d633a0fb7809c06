#!/usr/bin/env bash
# The cost of authentication and delivery receipts on the manifest path,
# end to end: `wrk` GETs one manifest by tag over TLS (keep-alive) from
#   off       -t tls
#   auth      -t tls --htpasswd, a bearer token from /token on every request
#   receipts  the same plus --receipts (a signed receipt per manifest)
# ROUNDS rounds, the variants alternating within each; medians and the
# ratios auth/off (goal >= 0.90) and receipts/auth (goal >= 0.95), in
# requests a second and in the server's CPU time per request (utime +
# stime of all its threads, the receipts writer's too: wrk shares the 2
# cores, so CPU per request scatters far less than throughput). Also the
# median of each round's own ratios: the variants of one round run a few
# seconds apart, so a slow minute of the host (steal) moves both alike.
#
#   bash bench/audit.sh            (ROUNDS=3 DURATION=5 CONNS=32)
#
# JOURNAL=DIR puts the journal there (default: a new directory under
# TMPDIR); VARIANTS="auth receipts" measures only those.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/lib.sh"
: "${ROUNDS:=3}" "${DURATION:=5}" "${CONNS:=32}" "${QUIET_MAX_WAIT:=60}" "${VARIANTS:=off auth receipts}"
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
JOURNAL=${JOURNAL:-$WORK/journal}
mkdir -m 700 "$JOURNAL"
PORT=$((20000 + RANDOM % 20000))
PATH_=/v2/hello/manifests/latest

start() { # VARIANT
  local extra=()
  case $1 in
    auth) extra=(--htpasswd "$WORK/htpasswd") ;;
    receipts) extra=(--htpasswd "$WORK/htpasswd" --receipts "$JOURNAL" --receipts-key "$WORK/receipts.key") ;;
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

cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
# The receipts writer thread's own CPU ticks (0 without one).
writer_ticks() {
  local t
  for t in /proc/"$SERVER"/task/*; do
    [[ $(cat "$t/comm" 2>/dev/null) == receipts ]] && { awk '{print $14 + $15}' "$t/stat"; return; }
  done
  echo 0
}

measure() { # VARIANT -> "req/s µs-of-server-CPU-per-request µs-of-writer-CPU-per-request"
  local header=()
  if [[ $1 != off ]]; then
    local token
    token=$(curl -sk -u bench:secret "https://127.0.0.1:$PORT/token?service=127.0.0.1:$PORT&scope=repository:hello:pull" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    header=(-H "Authorization: Bearer $token")
  fi
  curl -sfk "${header[@]}" -o /dev/null "https://127.0.0.1:$PORT$PATH_" || { echo "$1: request refused" >&2; exit 1; }
  local before after wbefore wafter
  before=$(cpu_ticks) wbefore=$(writer_ticks)
  wrk -t2 -c"$CONNS" -d"${DURATION}s" "${header[@]}" "https://127.0.0.1:$PORT$PATH_" >"$WORK/wrk.out"
  after=$(cpu_ticks) wafter=$(writer_ticks)
  awk -v ticks=$((after - before)) -v wticks=$((wafter - wbefore)) -v hz="$(getconf CLK_TCK)" '
    / requests in / { n = $1 } /Requests\/sec/ { rps = $2 }
    END { printf "%s %.2f %.3f\n", rps, ticks / hz * 1e6 / n, wticks / hz * 1e6 / n }' "$WORK/wrk.out"
}

declare -A RUNS CPU WRITER
PAIRED=() PAIRED_CPU=()
for round in $(seq "$ROUNDS"); do
  for variant in $VARIANTS; do
    start "$variant"
    wait_quiet "round $round $variant"
    read -r rps cpu wcpu < <(measure "$variant")
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
    RUNS[$variant]+="$rps "
    CPU[$variant]+="$cpu "
    WRITER[$variant]+="$wcpu "
    log "round $round $variant: $rps req/s, $cpu µs of server CPU per request ($wcpu µs in the receipts writer)"
    declare "ROUND_RPS_$variant=$rps" "ROUND_CPU_$variant=$cpu"
  done
  if [[ " $VARIANTS " == *" auth "* && " $VARIANTS " == *" receipts "* ]]; then
    PAIRED+=("$(awk -v a="$ROUND_RPS_auth" -v r="$ROUND_RPS_receipts" 'BEGIN { printf "%.3f", r / a }')")
    PAIRED_CPU+=("$(awk -v a="$ROUND_CPU_auth" -v r="$ROUND_CPU_receipts" 'BEGIN { printf "%.3f", a / r }')")
  fi
done
# The median of numbers on stdin (the mean of the middle two for an even count).
median() { tr ' ' '\n' | { grep . || true; } | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "| variant | runs (req/s) | median | server CPU per request (µs) | median |"
echo "| --- | --- | --- | --- | --- |"
for variant in $VARIANTS; do
  echo "| $variant | ${RUNS[$variant]}| $(echo "${RUNS[$variant]}" | median) | ${CPU[$variant]}| $(echo "${CPU[$variant]}" | median) |"
done
off=$(echo "${RUNS[off]:-}" | median); auth=$(echo "${RUNS[auth]:-}" | median); rec=$(echo "${RUNS[receipts]:-}" | median)
coff=$(echo "${CPU[off]:-}" | median); cauth=$(echo "${CPU[auth]:-}" | median); crec=$(echo "${CPU[receipts]:-}" | median)
awk -v o="$off" -v a="$auth" -v r="$rec" -v co="$coff" -v ca="$cauth" -v cr="$crec" 'BEGIN {
  if (o && a) printf "auth/off %.2f (goal >= 0.90); CPU per request %.2f of off\n", a/o, co/ca
  if (a && r) printf "receipts/auth %.2f (goal >= 0.95); CPU per request %.2f of auth\n", r/a, ca/cr }'
if ((${#PAIRED[@]})); then
  echo "receipts/auth per round: ${PAIRED[*]} (median $(echo "${PAIRED[*]}" | median));" \
    "CPU per request, auth/receipts per round: ${PAIRED_CPU[*]} (median $(echo "${PAIRED_CPU[*]}" | median))"
fi
if [[ " $VARIANTS " == *" receipts "* ]]; then
  echo "receipts written: $(cat "$JOURNAL"/*.jsonl | grep -c '"type":"delivery"');" \
    "the writer thread's CPU per receipt (median): $(echo "${WRITER[receipts]}" | median) µs"
fi
if ((${#UNDER_LOAD[@]})); then echo "measured under load: ${UNDER_LOAD[*]}"; fi
