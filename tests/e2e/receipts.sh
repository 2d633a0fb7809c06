#!/usr/bin/env bash
# Signed delivery receipts end to end, against `-t tls --htpasswd --receipts`:
# skopeo pulls hello as alice, the server stops, and `ir-server receipts
# verify` says alice received hello's digest and that the journal is
# closed; a journal cut at its end is named against the head kept from
# that verify; a journal edited on disk is named by file and line (exit 1).
#
# Then a full disk (the journal on a 256 KiB tmpfs, filled up): every pull
# is still served, the server stays up, the write errors are a metric and
# an error line, /readyz answers 503 naming the receipts; once space is
# freed, receipts are written again, /readyz is 200, and the journal
# verifies (records lost to the full disk are counted, never a broken chain).
#
# Usage: tests/e2e/receipts.sh   (needs: openssl curl jq htpasswd skopeo;
#                                 root, to mount the small tmpfs)
# Env:   IR_SERVER_BIN (default target/debug/ir-server)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/e2e/lib.sh"

CERTS=$WORK/certs
"$ROOT/scripts/make-dev-cert.sh" "$CERTS" >>"$E2E_LOG"
CA_DIR=$WORK/ca-only && mkdir -p "$CA_DIR" && cp "$CERTS/ca.crt" "$CA_DIR/"
htpasswd -nbB alice secret >"$WORK/htpasswd"
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null \
  | openssl pkcs8 -topk8 -nocrypt -out "$WORK/receipts.key"
openssl ec -in "$WORK/receipts.key" -pubout -out "$WORK/receipts.pub" 2>/dev/null
HELLO=$(jq -r '.manifests[0].digest' "$REG/hello/index.json")
CURL=(curl -sS --cacert "$CERTS/ca.crt")

# serve JOURNAL: ir-server -t tls --htpasswd --receipts JOURNAL (a
# checkpoint every 10 records), metrics on their own port.
serve() {
  PORT=$(free_port) METRICS=$(free_port)
  URL=https://localhost:$PORT
  start_server "$WORK/server.log" -t tls -c "$CERTS/server.crt" -k "$CERTS/server.key" \
    -r "$REG" -p "$PORT" --bind 127.0.0.1 --metrics-addr "127.0.0.1:$METRICS" \
    --htpasswd "$WORK/htpasswd" --receipts "$1" --receipts-key "$WORK/receipts.key" \
    --receipts-checkpoint 10
  wait_http "$URL/v2/" --cacert "$CERTS/ca.crt" -u alice:secret || { cat "$WORK/server.log"; exit 1; }
}
stop() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; }
verify() { "$BIN" receipts verify "$1" --key "$WORK/receipts.pub" >"$WORK/verify.out" 2>&1; }

# --- A pull, receipted, verified, then tampered with ---------------------
mkdir -m 700 "$WORK/journal"
serve "$WORK/journal"
check "skopeo pulls hello as alice" skopeo copy -q --all --src-cert-dir "$CA_DIR" \
  --src-creds alice:secret "docker://localhost:$PORT/hello:latest" "oci:$WORK/out:hello"
check "the server stops cleanly (the closing checkpoint)" stop
check "verify: intact, exit 0" verify "$WORK/journal"
cat "$WORK/verify.out" >>"$E2E_LOG"
check "verify: alice received hello:latest $HELLO" \
  bash -c "grep -A50 '^user alice' '$WORK/verify.out' | grep -q 'hello:latest $HELLO'"
check "verify: nothing after the last checkpoint" grep -q ' 0 deliveries after the last checkpoint' "$WORK/verify.out"
HEAD=$(sed -n 's/^head \([0-9]*:sha256:[0-9a-f]*\) (closed.*/\1/p' "$WORK/verify.out")
check "verify: the journal is closed, and its head is printed to keep" test -n "$HEAD"
# Cut at its end (the closing checkpoint removed): the chain alone still
# holds, but the journal is no longer closed, and against the head kept
# elsewhere the cut is named (exit 1).
cp -a "$WORK/journal" "$WORK/cut"
sed -i '$d' "$(ls "$WORK"/cut/*.jsonl | tail -1)"
verify "$WORK/cut"
check "a journal cut at its end is no longer closed" grep -q '^head .* (open:' "$WORK/verify.out"
"$BIN" receipts verify "$WORK/cut" --key "$WORK/receipts.pub" --expect-head "$HEAD" >"$WORK/verify.out" 2>&1; code=$?
cat "$WORK/verify.out" >>"$E2E_LOG"
check "against the head kept elsewhere the cut journal fails (exit 1)" test "$code" = 1
check "...and the cut is named" grep -q "without line seq ${HEAD%%:*}, the head kept elsewhere" "$WORK/verify.out"
"$BIN" receipts verify "$WORK/journal" --key "$WORK/receipts.pub" --expect-head "$HEAD" >"$WORK/verify.out" 2>&1
check "the whole journal passes against its head (exit 0)" test "$?" = 0
FILE=$(grep -l "$HELLO" "$WORK"/journal/*.jsonl | head -1)
LINE=$(grep -n "$HELLO" "$FILE" | head -1 | cut -d: -f1)
sed -i "${LINE}s/${HELLO#sha256:}/$(printf '0%.0s' $(seq 64))/" "$FILE"
verify "$WORK/journal"; code=$?
cat "$WORK/verify.out" >>"$E2E_LOG"
check "an edited record: exit 1" test "$code" = 1
check "an edited record is named by file and line" grep -q "$(basename "$FILE"):$LINE (seq" "$WORK/verify.out"

# --- A full disk ---------------------------------------------------------
mkdir -p "$WORK/full"
if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o size=256k,mode=700 tmpfs "$WORK/full" 2>>"$E2E_LOG"; then
  check "mount a 256 KiB tmpfs for the full-disk case (needs root)" false
  summary "receipts"; exit $?
fi
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait; umount "$WORK/full"; e2e_cleanup' EXIT
serve "$WORK/full"
# Fill what the journal's start line left.
dd if=/dev/zero of="$WORK/full/filler" bs=1k count=1024 >>"$E2E_LOG" 2>&1
pulls() { # N: GETs of hello's manifest; prints how many were not 200
  local bad=0
  for _ in $(seq "$1"); do
    [ "$("${CURL[@]}" -u alice:secret -o /dev/null -w '%{http_code}' "$URL/v2/hello/manifests/latest")" = 200 ] || bad=$((bad + 1))
  done
  echo "$bad"
}
check "with the disk full, 300 pulls are each served" test "$(pulls 300)" = 0
metric() { curl -sS "http://127.0.0.1:$METRICS/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
ready() { curl -sS -o "$WORK/ready" -w '%{http_code}' "http://127.0.0.1:$METRICS/readyz"; }
wait_errors() {
  for _ in $(seq 50); do
    [ "$(metric ir_server_receipts_write_errors_total)" != 0 ] && return 0
    sleep 0.1
  done
  return 1
}
check "the write errors are counted (ir_server_receipts_write_errors_total)" wait_errors
check "the server is still up" kill -0 "$SERVER_PID"
check "/readyz answers 503" test "$(ready)" = 503
check "/readyz names the receipts" grep -q "receipts" "$WORK/ready"
check "an error line names the journal" grep -q "receipts: writing the journal failed" "$WORK/server.log"
check "ir_server_receipts_healthy 0" test "$(metric ir_server_receipts_healthy)" = 0

rm -f "$WORK/full/filler"
healthy_again() {
  for _ in $(seq 100); do
    pulls 5 >/dev/null
    [ "$(ready)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
check "space freed: /readyz is 200 again after the next checkpoint" healthy_again
check "the server stops cleanly" stop
verify "$WORK/full"; code=$?
cat "$WORK/verify.out" >>"$E2E_LOG"
check "the journal from the full disk verifies (exit 0)" test "$code" = 0
check "it holds the deliveries written after the disk was freed" \
  bash -c "grep -A100000 '^user alice' '$WORK/verify.out' | grep -c 'hello:latest' | awk '\$1 >= 5 {ok=1} END {exit !ok}'"
summary "receipts"
