#!/usr/bin/env bash
# Replicas without shared storage: a primary ir-server over TLS that
# requires a client certificate (--client-ca), and two replicas, each
# with its own root filled by `ir-client sync` from the primary (once,
# then every second as a sidecar would) and served by its own ir-server
# (--watch), behind haproxy. A publish on the primary (a new tag, swapped
# in by one rename) reaches both replicas while a client keeps pulling
# through haproxy, and no pull fails.
#
# Usage: tests/e2e/replicas.sh   (needs: haproxy openssl curl jq python3
#        skopeo; builds nothing)
# Env:   IR_SERVER_BIN, IR_CLIENT_BIN (default target/debug/ir-server,
#        target/debug/ir-client)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLIENT=${IR_CLIENT_BIN:-$ROOT/target/debug/ir-client}
. "$ROOT/tests/e2e/lib.sh"

for tool in haproxy openssl curl jq python3 skopeo; do
  command -v "$tool" >/dev/null || { echo "replicas: needs $tool"; exit 1; }
done

CERTS=$WORK/certs
"$ROOT/scripts/make-dev-cert.sh" "$CERTS" >>"$E2E_LOG"
# The replicas' client certificate, from the same development CA.
(
  cd "$CERTS" && umask 077 &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout replica.key -out replica.csr -subj "/CN=replica" 2>/dev/null &&
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
      'extendedKeyUsage=clientAuth' >replica.ext &&
    openssl x509 -req -in replica.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out replica.crt -days 2 -extfile replica.ext 2>/dev/null
) >>"$E2E_LOG" 2>&1 || { echo "replicas: could not make the client certificate"; exit 1; }

# The primary --------------------------------------------------------------
PRIMARY=$WORK/primary
mkdir -p "$PRIMARY"
cp -a "$REG/hello" "$PRIMARY/hello"
PPORT=$(free_port)
PMETRICS=$(free_port)
start_server "$WORK/primary.log" -r "$PRIMARY" -p "$PPORT" --bind 127.0.0.1 --watch \
  -t tls -c "$CERTS/server.crt" -k "$CERTS/server.key" --client-ca "$CERTS/ca.crt" \
  --metrics-addr "127.0.0.1:$PMETRICS"
wait_http "http://127.0.0.1:$PMETRICS/readyz" || { cat "$WORK/primary.log"; exit 1; }
UPSTREAM=https://127.0.0.1:$PPORT/hello
sync() { # ROOT ARGS...
  local root=$1
  shift
  "$CLIENT" sync --root "$root" --ca "$CERTS/ca.crt" --cert "$CERTS/replica.crt" \
    --key "$CERTS/replica.key" --retries 0 -q "$UPSTREAM" "$@"
}
check "without the client certificate the primary gives nothing" \
  bash -c "! '$CLIENT' sync --root $WORK/none --ca $CERTS/ca.crt --retries 0 -q $UPSTREAM && ! [ -e $WORK/none/hello ]"

# Two replicas: filled once, then a sidecar sync every second --------------
declare -A RPORT RMETRICS
for r in r1 r2; do
  RPORT[$r]=$(free_port)
  RMETRICS[$r]=$(free_port)
  check "$r: the first sync from the primary (the init container)" sync "$WORK/$r"
  start_server "$WORK/$r.log" -r "$WORK/$r" -p "${RPORT[$r]}" --bind 127.0.0.1 --watch \
    --no-access-log --metrics-addr "127.0.0.1:${RMETRICS[$r]}"
  wait_http "http://127.0.0.1:${RMETRICS[$r]}/readyz" || { cat "$WORK/$r.log"; exit 1; }
  sync "$WORK/$r" --interval 1s >>"$WORK/$r-sync.log" 2>&1 &
  PIDS+=("$!")
done

# haproxy in front of the replicas -------------------------------------------
FE=$(free_port)
cat >"$WORK/haproxy.cfg" <<EOF
defaults
    timeout connect 2s
    timeout client  60s
    timeout server  60s
    timeout check   2s
    retries 3
    option redispatch
    default-server inter 300ms fall 2 rise 2

frontend fe
    mode http
    bind 127.0.0.1:$FE
    default_backend replicas

backend replicas
    mode http
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    retry-on all-retryable-errors
    server r1 127.0.0.1:${RPORT[r1]} check port ${RMETRICS[r1]}
    server r2 127.0.0.1:${RPORT[r2]} check port ${RMETRICS[r2]}
EOF
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$FE/v2/" || { cat "$WORK/haproxy.log"; exit 1; }

# A client pulling through haproxy until told to stop -------------------------
: >"$WORK/pulls"
(
  i=0
  while [ ! -e "$WORK/stop" ]; do
    i=$((i + 1))
    if "$CLIENT" pull -q --retries 0 "http://127.0.0.1:$FE/hello:latest" --out "$WORK/pulled-$((i % 2))" >>"$WORK/pull.log" 2>&1; then
      echo ok >>"$WORK/pulls"
    else
      echo FAIL >>"$WORK/pulls"
    fi
  done
) &
PULLER=$!
PIDS+=("$PULLER")

# Publish on the primary: hello gains the tag 2 (the multi-arch index),
# written beside the served layout and exchanged with it in one rename.
sleep 1
mkdir -p "$WORK/next"
cp -a "$PRIMARY/hello" "$WORK/next/hello"
check "skopeo writes hello:2 into the next version of the layout" \
  skopeo copy -q --all "oci:$REG/multi:latest" "oci:$WORK/next/hello:2"
exchange() { # A B: renameat2(RENAME_EXCHANGE)
  python3 - "$1" "$2" <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
if libc.renameat2(AT_FDCWD, sys.argv[1].encode(), AT_FDCWD, sys.argv[2].encode(), RENAME_EXCHANGE) != 0:
    e = ctypes.get_errno()
    sys.exit(f"renameat2: {os.strerror(e)}")
PY
}
mv "$WORK/next/hello" "$PRIMARY/.hello-next"
check "the new version is swapped in on the primary" exchange "$PRIMARY/.hello-next" "$PRIMARY/hello"
rm -rf "$PRIMARY/.hello-next"

served_2() { # PORT: the replica serves hello:2
  curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.index.v1+json' \
    "http://127.0.0.1:$1/v2/hello/manifests/2"
}
for r in r1 r2; do
  check "$r serves hello:2 within 30 s" \
    bash -c "for _ in \$(seq 1 300); do curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.index.v1+json' http://127.0.0.1:${RPORT[$r]}/v2/hello/manifests/2 && exit 0; sleep 0.1; done; exit 1"
done
# Keep pulling a little after the change reached both.
sleep 2
touch "$WORK/stop"
wait "$PULLER" 2>/dev/null
OK=$(grep -c '^ok$' "$WORK/pulls")
FAILED=$(grep -c '^FAIL$' "$WORK/pulls")
echo "pulls through haproxy: $OK ok, $FAILED failed" >>"$E2E_LOG"
check "pulls through haproxy during the publish: $OK, none failed" \
  bash -c "[ $FAILED -eq 0 ] && [ $OK -ge 5 ]"
check "hello:2 through haproxy" served_2 "$FE"
for r in r1 r2; do
  check "$r's root passes ir-server --check" "$BIN" --check -r "$WORK/$r"
done

summary "e2e replicas"
