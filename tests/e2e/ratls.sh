#!/usr/bin/env bash
# RA-TLS end to end with the real binaries, as the walk-through in
# docs/ratls.md describes: an emulated realm (ir-client --emulate-realm)
# pulls from ir-server -t ra-tls, with the platform checked locally
# (--cpak, a trust-anchor list pinning the platform's firmware) and then
# by a Veraison-compatible mock (-u, -v; over HTTPS
# with --veraison-ca, then over plain http on loopback, then both --cpak
# and -u). Also: trust inputs that are missing, published or pin no
# firmware stop the server at start; a realm
# limited to some applications, a realm the server does not trust, a plain
# TLS client, and reference values reloaded on SIGHUP.
#
# Usage: tests/e2e/ratls.sh   (needs: openssl curl jq; builds nothing)
# Env:   IR_SERVER_BIN, IR_CLIENT_BIN, VERAISON_MOCK_BIN (default target/debug/…)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLIENT=${IR_CLIENT_BIN:-$ROOT/target/debug/ir-client}
MOCK=${VERAISON_MOCK_BIN:-$ROOT/target/debug/veraison-mock}
. "$ROOT/tests/e2e/lib.sh"

CERTS=$WORK/certs
"$ROOT/scripts/make-dev-cert.sh" "$CERTS" >>"$E2E_LOG"

# The realm: keys, and what a server needs to trust it (limited to hello
# and team/*).
"$CLIENT" emulated-realm --realm-keys "$WORK/realm" --name demo-realm \
  --application hello --application 'team/*' \
  --cpak-out "$WORK/cpak.pub" --trust-anchors-out "$WORK/ta.json" \
  --reference-values-out "$WORK/realm.json" >>"$E2E_LOG" 2>&1
# A second realm, trusted by nobody.
"$CLIENT" emulated-realm --realm-keys "$WORK/stranger" >>"$E2E_LOG" 2>&1

pull() { # OUT URL [ARGS...]
  local out=$1 url=$2
  shift 2
  # No retries: a refused realm is refused once, so the server logs each
  # refusal the script looks for (its log is rate-limited per address).
  "$CLIENT" pull "$url" --out "$out" --ca "$CERTS/ca.crt" --retries 0 "$@"
}
export -f pull
realm() { # COMMAND ARGS...: any ir-client command as the attested realm
  local cmd=$1
  shift
  "$CLIENT" "$cmd" "$@" --ca "$CERTS/ca.crt" --emulate-realm --realm-keys "$WORK/realm" 2>/dev/null
}
export -f realm
export CLIENT CERTS WORK

# --- local CPAK mode ------------------------------------------------------
PORT=$(free_port)
start_server "$WORK/local.log" -t ra-tls -c "$CERTS/server.crt" -k "$CERTS/server.key" \
  --cpak "$WORK/ta.json" -j "$WORK/realm.json" -r "$REG" -p "$PORT" --bind 127.0.0.1 \
  --max-connection-age 120 --max-handshakes-per-address 4
LOCAL=$SERVER_PID
for _ in $(seq 1 100); do grep -q "ready" "$WORK/local.log" && break; sleep 0.1; done
check "server says local platform keys are in force" grep -q "platforms verified by local platform keys" "$WORK/local.log"
check "server says the platform's firmware is pinned" grep -q "firmware pinned by reference values" "$WORK/local.log"

check "attested realm pulls hello over RA-TLS" \
  pull "$WORK/out-hello" "ra-tls://localhost:$PORT/hello:latest" --emulate-realm --realm-keys "$WORK/realm"
check "the pulled layout verifies with ir-server --check" \
  bash -c "mkdir -p $WORK/check && cp -r $WORK/out-hello $WORK/check/hello && $BIN --check -r $WORK/check >/dev/null 2>&1"
# hello is an index of linux/amd64 and linux/arm64: pull takes this host's.
HELLO_INDEX=$(jq -r .manifests[0].digest "$REG/hello/index.json")
HELLO_HERE=$(jq -r --arg a "$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')" '.manifests[] | select(.platform.architecture==$a) | .digest' "$REG/hello/blobs/sha256/${HELLO_INDEX#sha256:}")
check "same digest as the source's image for this platform" \
  bash -c "[ \"\$(jq -r .manifests[0].digest $WORK/out-hello/index.json)\" = $HELLO_HERE ]"
check "the emulated realm says it is not secure" \
  bash -c "pull $WORK/out-x ra-tls://localhost:$PORT/hello:latest --emulate-realm --realm-keys $WORK/realm 2>&1 | grep -q 'NOT SECURE'"
# hold_silent FIRST N: N TCP connections to $PORT that never send a byte,
# from 127.0.0.FIRST, FIRST+1, ...; prints "open" once they are, and holds
# them 30 s.
hold_silent() {
  python3 - "$PORT" "$1" "$2" <<'PY'
import socket, sys, time
port, first, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
held = [socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.%d" % (first + i), 0)) for i in range(n)]
print("open", flush=True)
time.sleep(30)
PY
}
export -f hold_silent
export PORT
check "a realm pulls while 20 silent connections from other addresses are open" \
  bash -c "hold_silent 2 20 >$WORK/silent.out & sp=\$!; for i in \$(seq 1 100); do grep -q open $WORK/silent.out && break; sleep 0.1; done; pull $WORK/out-silent ra-tls://localhost:$PORT/hello:latest --emulate-realm --realm-keys $WORK/realm; rc=\$?; kill \$sp; exit \$rc"
check "past --max-handshakes-per-address (4), a connection from that address is closed at once" \
  bash -c "python3 -c '
import socket, time
held = [socket.create_connection((\"127.0.0.1\", $PORT), source_address=(\"127.0.0.50\", 0)) for _ in range(5)]
time.sleep(1)
closed = 0
for s in held:
    s.setblocking(False)
    try:
        closed += s.recv(1) == b\"\"
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
assert closed == 1, closed
'"
check "a namespaced application allowed by team/*" \
  pull "$WORK/out-tools" "ra-tls://localhost:$PORT/team/tools:latest" --emulate-realm --realm-keys "$WORK/realm"
check "ls lists hello's tags over RA-TLS" \
  bash -c "realm ls ra-tls://localhost:$PORT/hello | grep -qx latest"
check "manifest prints the manifest the layout holds, digest checked" \
  bash -c "[ \"sha256:\$(realm manifest ra-tls://localhost:$PORT/hello:latest | sha256sum | cut -d' ' -f1)\" = \"\$(jq -r .manifests[0].digest $REG/hello/index.json)\" ]"
check "blob copies the config to stdout, digest checked" \
  bash -c "cfg=\$(jq -r .config.digest $WORK/out-hello/blobs/sha256/\$(jq -r .manifests[0].digest $WORK/out-hello/index.json | cut -d: -f2)); [ \"sha256:\$(realm blob ra-tls://localhost:$PORT/hello@\$cfg | sha256sum | cut -d' ' -f1)\" = \"\$cfg\" ]"
check "discover answers over RA-TLS (JSON)" \
  bash -c "realm discover ra-tls://localhost:$PORT/hello:latest --format json | jq -e '.manifests | type == \"array\"' >/dev/null"
check "catalog lists only what the realm may pull" \
  bash -c "out=\$(realm catalog ra-tls://localhost:$PORT); grep -qx hello <<<\"\$out\" && ! grep -qx multi <<<\"\$out\""
check "an application outside the realm's list is NAME_UNKNOWN" \
  bash -c "out=\$(pull $WORK/out-multi ra-tls://localhost:$PORT/multi:latest --emulate-realm --realm-keys $WORK/realm 2>&1); echo \"\$out\"; grep -q NAME_UNKNOWN <<<\"\$out\""
check "an untrusted realm is refused" \
  bash -c "! pull $WORK/out-s ra-tls://localhost:$PORT/hello:latest --emulate-realm --realm-keys $WORK/stranger"
# (its platform has no entry in the trust-anchor list: platform_key)
check "the refusal is logged with the peer and the reason" \
  bash -c "for i in \$(seq 1 50); do grep 'connection refused' $WORK/local.log | grep 'platform_key' | grep -q 'peer=127.0.0.1' && exit 0; sleep 0.1; done; exit 1"
check "a plain TLS client gets no registry content" \
  bash -c "! curl -fsS --cacert $CERTS/ca.crt https://localhost:$PORT/v2/_catalog"

# Reference values reload on SIGHUP: a new release of the realm with
# another RIM replaces the old one.
"$CLIENT" emulated-realm --realm-keys "$WORK/realm" --rim "$(printf 'ab%.0s' $(seq 1 32))" \
  --reference-values-out "$WORK/realm.json" >>"$E2E_LOG" 2>&1
kill -HUP "$LOCAL"
check "SIGHUP reloads the reference values" \
  bash -c "for i in \$(seq 1 50); do grep -q 'reference values reloaded' $WORK/local.log && exit 0; sleep 0.1; done; exit 1"
check "the old release is refused after the reload" \
  bash -c "! pull $WORK/out-old ra-tls://localhost:$PORT/hello:latest --emulate-realm --realm-keys $WORK/realm"
check "the reason is the RIM mismatch" \
  bash -c "for i in \$(seq 1 50); do grep -q 'rim_mismatch' $WORK/local.log && exit 0; sleep 0.1; done; exit 1"

# --- Veraison mode --------------------------------------------------------
"$CLIENT" emulated-realm --realm-keys "$WORK/realm" --name demo-realm --reference-values-out "$WORK/realm2.json" >>"$E2E_LOG" 2>&1
"$MOCK" --listen 127.0.0.1:0 --jwk-out "$WORK/ear.jwk" >"$WORK/mock.out" 2>"$WORK/mock.log" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/mock.out" ] && [ -s "$WORK/ear.jwk" ] && break; sleep 0.1; done
MOCK_URL=$(head -1 "$WORK/mock.out")
VPORT=$(free_port)
start_server "$WORK/veraison.log" -t ra-tls -c "$CERTS/server.crt" -k "$CERTS/server.key" \
  -u "$MOCK_URL" -v "$WORK/ear.jwk" -j "$WORK/realm2.json" -r "$REG" -p "$VPORT" --bind 127.0.0.1
for _ in $(seq 1 100); do grep -q "ready" "$WORK/veraison.log" && break; sleep 0.1; done
check "server says Veraison is in force" grep -q "platforms verified by Veraison" "$WORK/veraison.log"
check "attested realm pulls multi through Veraison" \
  pull "$WORK/out-v" "ra-tls://localhost:$VPORT/multi:latest" --emulate-realm --realm-keys "$WORK/realm"

# A mock that says the platform is contraindicated.
"$MOCK" --listen 127.0.0.1:0 --jwk-out "$WORK/ear2.jwk" --status CCA_SSD_PLATFORM=contraindicated >"$WORK/mock2.out" 2>>"$WORK/mock.log" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/mock2.out" ] && [ -s "$WORK/ear2.jwk" ] && break; sleep 0.1; done
CPORT=$(free_port)
start_server "$WORK/contra.log" -t ra-tls -c "$CERTS/server.crt" -k "$CERTS/server.key" \
  -u "$(head -1 "$WORK/mock2.out")" -v "$WORK/ear2.jwk" -j "$WORK/realm2.json" -r "$REG" -p "$CPORT" --bind 127.0.0.1
for _ in $(seq 1 100); do grep -q "ready" "$WORK/contra.log" && break; sleep 0.1; done
check "a contraindicated platform is refused" \
  bash -c "! pull $WORK/out-c ra-tls://localhost:$CPORT/multi:latest --emulate-realm --realm-keys $WORK/realm"
check "the reason names Veraison's verdict" \
  bash -c "for i in \$(seq 1 50); do grep -q 'veraison_not_affirming' $WORK/contra.log && exit 0; sleep 0.1; done; exit 1"

# --- Veraison over HTTPS, trusted through --veraison-ca -----------------
"$MOCK" --listen 127.0.0.1:0 --jwk-out "$WORK/ear3.jwk" \
  --tls-cert "$CERTS/server.crt" --tls-key "$CERTS/server.key" >"$WORK/mock3.out" 2>>"$WORK/mock.log" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/mock3.out" ] && [ -s "$WORK/ear3.jwk" ] && break; sleep 0.1; done
HTTPS_URL=$(head -1 "$WORK/mock3.out")
check "the mock serves HTTPS" bash -c "[[ $HTTPS_URL == https://localhost:* ]]"
HPORT=$(free_port)
start_server "$WORK/https.log" -t ra-tls -c "$CERTS/server.crt" -k "$CERTS/server.key" \
  -u "$HTTPS_URL" --veraison-ca "$CERTS/ca.crt" -v "$WORK/ear3.jwk" -j "$WORK/realm2.json" -r "$REG" -p "$HPORT" --bind 127.0.0.1
for _ in $(seq 1 100); do grep -q "ready" "$WORK/https.log" && break; sleep 0.1; done
check "server says Veraison over HTTPS is in force" grep -q "platforms verified by Veraison at https://localhost" "$WORK/https.log"
check "attested realm pulls multi through Veraison over HTTPS" \
  pull "$WORK/out-https" "ra-tls://localhost:$HPORT/multi:latest" --emulate-realm --realm-keys "$WORK/realm"

# Without --veraison-ca the mock's certificate is not trusted: refused.
NPORT=$(free_port)
start_server "$WORK/noca.log" -t ra-tls -c "$CERTS/server.crt" -k "$CERTS/server.key" \
  -u "$HTTPS_URL" -v "$WORK/ear3.jwk" -j "$WORK/realm2.json" -r "$REG" -p "$NPORT" --bind 127.0.0.1
for _ in $(seq 1 100); do grep -q "ready" "$WORK/noca.log" && break; sleep 0.1; done
check "without --veraison-ca the realm is refused" \
  bash -c "! pull $WORK/out-noca ra-tls://localhost:$NPORT/multi:latest --emulate-realm --realm-keys $WORK/realm"

# --cpak together with -u: both must pass.
BPORT=$(free_port)
start_server "$WORK/both.log" -t ra-tls -c "$CERTS/server.crt" -k "$CERTS/server.key" \
  --cpak "$WORK/ta.json" -u "$HTTPS_URL" --veraison-ca "$CERTS/ca.crt" -v "$WORK/ear3.jwk" \
  -j "$WORK/realm2.json" -r "$REG" -p "$BPORT" --bind 127.0.0.1
for _ in $(seq 1 100); do grep -q "ready" "$WORK/both.log" && break; sleep 0.1; done
check "server says both checks are in force" grep -q "platforms verified by local platform keys (1 trusted) and Veraison" "$WORK/both.log"
check "attested realm pulls with --cpak and Veraison" \
  pull "$WORK/out-both" "ra-tls://localhost:$BPORT/multi:latest" --emulate-realm --realm-keys "$WORK/realm"

# Plain http to anything but loopback is a start-up error.
check "plain http Veraison off loopback does not start" \
  bash -c "! timeout 20 $BIN -t ra-tls -c $CERTS/server.crt -k $CERTS/server.key -u http://192.0.2.1:8080 \
    -v $WORK/ear3.jwk -j $WORK/realm2.json -r $REG -p 0 --bind 127.0.0.1 >$WORK/offloop.log 2>&1 && grep -q loopback $WORK/offloop.log"
check "the start-up error says why" grep -q "loopback" "$WORK/offloop.log"

# A default build refuses --insecure-skip-challenge.
check "a default build refuses --insecure-skip-challenge" \
  bash -c "! timeout 20 $BIN -t ra-tls -c $CERTS/server.crt -k $CERTS/server.key --cpak $WORK/ta.json \
    -j $WORK/realm2.json -r $REG -p 0 --bind 127.0.0.1 --insecure-skip-challenge >$WORK/insecure.log 2>&1"
check "it says the build has no insecure-skip-challenge" grep -q "available in this build: false" "$WORK/insecure.log"

# Trust inputs are never defaulted, published or unpinned by accident.
startup() { # LOG ARGS...: runs the server, which must exit non-zero
  local log=$1
  shift
  ! timeout 20 "$BIN" -t ra-tls -c "$CERTS/server.crt" -k "$CERTS/server.key" -r "$REG" -p 0 \
    --bind 127.0.0.1 "$@" >"$log" 2>&1
}
check "without -j the server does not start and says what to pass" \
  bash -c "$(declare -f startup); BIN=$BIN CERTS=$CERTS REG=$REG startup $WORK/noj.log -v $WORK/ear3.jwk && grep -q 'needs -j' $WORK/noj.log"
check "Veraison without -v does not start and says what to pass" \
  bash -c "$(declare -f startup); BIN=$BIN CERTS=$CERTS REG=$REG startup $WORK/nov.log -j $WORK/realm2.json && grep -q 'needs -v' $WORK/nov.log"
PUBLISHED="$ROOT/crates/ir-testkit/fixtures/published-rfc9052-key11.jwk"
check "Veraison's published demo key as -v does not start" \
  bash -c "$(declare -f startup); BIN=$BIN CERTS=$CERTS REG=$REG startup $WORK/pub.log -j $WORK/realm2.json -v $PUBLISHED && grep -q 'private key is published' $WORK/pub.log"
check "a single --cpak key (no firmware pinned) does not start" \
  bash -c "$(declare -f startup); BIN=$BIN CERTS=$CERTS REG=$REG startup $WORK/unpinned.log -j $WORK/realm2.json --cpak $WORK/cpak.pub && grep -q 'pins no firmware' $WORK/unpinned.log"

summary "e2e ratls"
