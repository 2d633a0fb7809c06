#!/usr/bin/env bash
# RA-TLS under a flood of stalled handshakes from many source addresses: an
# emulated realm (at 127.0.0.1) attests and pulls while ADDRESSES source
# addresses (127.0.0.2, 127.0.0.3, ...) each hold PER_ADDRESS stalled
# handshakes open to the same port, as many as --max-handshakes-per-address
# allows by default: half send a TLS ClientHello and then nothing (the
# server has answered and waits for their certificate), half never send a
# byte. Each is reopened as soon as the server drops it, so the flood never
# lets go. Run in both platform modes: local CPAK, and Veraison (the
# testkit's veraison-mock). Goal: each attested pull (handshake +
# attestation + a small image) under 1 s with 40 addresses.
#
# Usage: bench/ratls-silent.sh          (needs python3; builds nothing)
# Env:   ADDRESSES (40), PER_ADDRESS (16), PULLS (30), MODES ("cpak veraison"),
#        IR_SERVER_BIN, IR_CLIENT_BIN, VERAISON_MOCK_BIN
#        (default target/release/… when built, else target/debug/…)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ADDRESSES=${ADDRESSES:-40}
PER_ADDRESS=${PER_ADDRESS:-16}
PULLS=${PULLS:-30}
MODES=${MODES:-cpak veraison}
pick() { [ -x "$ROOT/target/release/$1" ] && echo "$ROOT/target/release/$1" || echo "$ROOT/target/debug/$1"; }
SERVER=${IR_SERVER_BIN:-$(pick ir-server)}
CLIENT=${IR_CLIENT_BIN:-$(pick ir-client)}
MOCK=${VERAISON_MOCK_BIN:-$(pick veraison-mock)}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$ROOT/scripts/make-dev-cert.sh" "$WORK/certs" >/dev/null
"$CLIENT" emulated-realm --realm-keys "$WORK/realm" --application hello \
  --trust-anchors-out "$WORK/ta.json" --reference-values-out "$WORK/realm.json" >/dev/null 2>&1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_server MODE: starts ir-server in MODE; sets PORT.
start_server() {
  local platform=()
  case $1 in
    cpak) platform=(--cpak "$WORK/ta.json") ;;
    veraison)
      "$MOCK" --listen 127.0.0.1:0 --jwk-out "$WORK/ear.jwk" >"$WORK/mock.out" 2>"$WORK/mock.log" &
      PIDS+=($!)
      for _ in $(seq 1 100); do [ -s "$WORK/mock.out" ] && [ -s "$WORK/ear.jwk" ] && break; sleep 0.1; done
      platform=(-u "$(head -1 "$WORK/mock.out")" -v "$WORK/ear.jwk") ;;
  esac
  PORT=$(free_port)
  "$SERVER" -t ra-tls -c "$WORK/certs/server.crt" -k "$WORK/certs/server.key" \
    "${platform[@]}" -j "$WORK/realm.json" -r "$ROOT/registry" -p "$PORT" \
    --bind 127.0.0.1 >"$WORK/server-$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do grep -q "ready" "$WORK/server-$1.log" && break; sleep 0.1; done
}

# pulls LABEL: PULLS attested pulls, one after the other; prints the times.
pulls() {
  local times=()
  for i in $(seq 1 "$PULLS"); do
    local t0 t1
    t0=$(date +%s%N)
    "$CLIENT" pull "ra-tls://localhost:$PORT/hello:latest" --out "$WORK/out-$i" \
      --ca "$WORK/certs/ca.crt" --emulate-realm --realm-keys "$WORK/realm" --retries 0 >/dev/null 2>&1 \
      || { echo "$1: pull $i FAILED" >&2; return 1; }
    t1=$(date +%s%N)
    rm -rf "$WORK/out-$i"
    times+=($(((t1 - t0) / 1000000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$1" '
    { v[NR] = $1 } END { printf "%-44s median %5d ms   max %5d ms   (%d pulls)\n", label, v[int((NR + 1) / 2)], v[NR], NR }'
}

# flood: ADDRESSES x PER_ADDRESS stalled handshakes, each reopened when
# dropped; prints "open N" once all are, then one line per reopening.
flood() {
  python3 - "$PORT" "$ADDRESSES" "$PER_ADDRESS" <<'PY'
import selectors, socket, ssl, sys
port, addresses, per = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
# A real ClientHello, from Python's TLS stack, never continued.
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
out = ssl.MemoryBIO()
tls = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()
sel = selectors.DefaultSelector()
def open_one(source, sends_hello):
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    if sends_hello:
        s.sendall(hello)
    sel.register(s, selectors.EVENT_READ, (source, sends_hello))
for a in range(addresses):
    source = "127.0.0.%d" % (2 + a)
    for i in range(per):
        open_one(source, i % 2 == 0)
print("open", addresses * per, flush=True)
reopened = 0
while True:
    for key, _ in sel.select(timeout=1):
        try:
            data = key.fileobj.recv(65536)
        except OSError:
            data = b""
        if data:
            continue  # the server's answer to the ClientHello: never read on
        sel.unregister(key.fileobj)
        key.fileobj.close()
        open_one(*key.data)
        reopened += 1
        print("reopened", reopened, flush=True)
PY
}

echo "server: $SERVER; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in $MODES; do
  start_server "$mode"
  pulls "$mode: no flood"
  flood >"$WORK/flood-$mode.out" 2>&1 &
  FLOOD=$!
  PIDS+=($FLOOD)
  for _ in $(seq 1 300); do grep -qs "^open" "$WORK/flood-$mode.out" && break; sleep 0.1; done
  grep -q "^open" "$WORK/flood-$mode.out" || { echo "the flood did not start" >&2; cat "$WORK/flood-$mode.out" >&2; exit 1; }
  sleep 1
  pulls "$mode: $ADDRESSES addresses x $PER_ADDRESS stalled"
  kill "$FLOOD" 2>/dev/null || true
  echo "$mode: stalled handshakes the server dropped (timeouts) and the flood reopened: $(grep -c reopened "$WORK/flood-$mode.out" || true)"
done
