#!/usr/bin/env bash
# RA-TLS under a silent-connection flood: an emulated realm attests and
# pulls while N TCP connections that never send a byte are held open to
# the same port (an attacker that reconnects each one as soon as the
# server drops it, so N stay open all the time). Goal: each attested pull
# (handshake + attestation + a small image) under 1 s with N = 300.
#
# Usage: bench/ratls-silent.sh          (needs python3; builds nothing)
# Env:   SILENT (300), PULLS (30), IR_SERVER_BIN, IR_CLIENT_BIN
#        (default target/release/… when built, else target/debug/…)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SILENT=${SILENT:-300}
PULLS=${PULLS:-30}
pick() { [ -x "$ROOT/target/release/$1" ] && echo "$ROOT/target/release/$1" || echo "$ROOT/target/debug/$1"; }
SERVER=${IR_SERVER_BIN:-$(pick ir-server)}
CLIENT=${IR_CLIENT_BIN:-$(pick ir-client)}
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
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SERVER" -t ra-tls -c "$WORK/certs/server.crt" -k "$WORK/certs/server.key" \
  --cpak "$WORK/ta.json" -j "$WORK/realm.json" -r "$ROOT/registry" -p "$PORT" \
  --bind 127.0.0.1 >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do grep -q "ready" "$WORK/server.log" && break; sleep 0.1; done

# pulls LABEL: PULLS attested pulls, one after the other; prints the times.
pulls() {
  local times=()
  for i in $(seq 1 "$PULLS"); do
    local t0 t1
    t0=$(date +%s%N)
    "$CLIENT" pull "ra-tls://localhost:$PORT/hello:latest" --out "$WORK/out-$1-$i" \
      --ca "$WORK/certs/ca.crt" --emulate-realm --realm-keys "$WORK/realm" >/dev/null 2>&1 \
      || { echo "$1: pull $i FAILED" >&2; return 1; }
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$1" '
    { v[NR] = $1 } END { printf "%-32s median %5d ms   max %5d ms   (%d pulls)\n", label, v[int((NR + 1) / 2)], v[NR], NR }'
}

echo "server: $SERVER; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
pulls "no flood"

# The flood: SILENT connections held open, each reopened when dropped.
python3 - "$PORT" "$SILENT" >"$WORK/flood.out" 2>&1 <<'PY' &
import selectors, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
sel = selectors.DefaultSelector()
def open_one():
    s = socket.create_connection(("127.0.0.1", port))
    sel.register(s, selectors.EVENT_READ)
for _ in range(n):
    open_one()
print("open", n, flush=True)
reopened = 0
while True:
    for key, _ in sel.select(timeout=1):
        sel.unregister(key.fileobj)
        key.fileobj.close()
        open_one()
        reopened += 1
        print("reopened", reopened, flush=True)
PY
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "^open" "$WORK/flood.out" && break; sleep 0.1; done
sleep 0.5
pulls "$SILENT silent connections"
echo "silent connections the server dropped (no ClientHello in time) and the flood reopened: $(grep -c reopened "$WORK/flood.out" || true)"
