#!/usr/bin/env bash
# TLS end to end: curl over HTTP/1.1 and HTTP/2 with the development CA,
# skopeo with --src-cert-dir, plain HTTP refused, every PEM key form,
# rotation on SIGHUP (seen in the served serial), a broken replacement
# keeping the old pair, and the hint when the default certificate is missing.
#
# Usage: tests/e2e/tls.sh   (needs: openssl curl skopeo jq)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/e2e/lib.sh"

CERTS=$WORK/certs
"$ROOT/scripts/make-dev-cert.sh" "$CERTS" >>"$E2E_LOG"
mkdir -p "$WORK/skopeo-certs" && cp "$CERTS/ca.crt" "$WORK/skopeo-certs/"

PORT=$(free_port)
start_server "$WORK/server.log" -t tls -c "$CERTS/server.crt" -k "$CERTS/server.key" -r "$REG" -p "$PORT" --bind 127.0.0.1
wait_http "https://localhost:$PORT/v2/" --cacert "$CERTS/ca.crt" || { cat "$WORK/server.log"; exit 1; }
URL=https://localhost:$PORT

served_serial() { # the serial a fresh handshake is shown
  openssl s_client -connect "127.0.0.1:$PORT" -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial | cut -d= -f2
}

check "curl over HTTP/1.1 with the CA" \
  bash -c "[ \"\$(curl -fsS --http1.1 --cacert $CERTS/ca.crt -o /dev/null -w '%{http_version}' $URL/v2/hello/manifests/latest)\" = 1.1 ]"
check "curl over HTTP/2 (ALPN h2) with the CA" \
  bash -c "[ \"\$(curl -fsS --http2 --cacert $CERTS/ca.crt -o /dev/null -w '%{http_version}' $URL/v2/hello/manifests/latest)\" = 2 ]"
check "curl by IP address (SAN 127.0.0.1)" curl -fsS --cacert "$CERTS/ca.crt" -o /dev/null "https://127.0.0.1:$PORT/v2/"
check "curl without the CA is refused" bash -c "! curl -fsS -o /dev/null $URL/v2/"
check "plain HTTP on the TLS port is refused" bash -c "! curl -fsS -o /dev/null http://127.0.0.1:$PORT/v2/"
check "TLS 1.2 handshake" bash -c "openssl s_client -tls1_2 -connect 127.0.0.1:$PORT </dev/null 2>/dev/null | grep -q 'New, TLSv1.2'"
check "TLS 1.3 handshake" bash -c "openssl s_client -tls1_3 -connect 127.0.0.1:$PORT </dev/null 2>/dev/null | grep -q 'New, TLSv1.3'"
check "skopeo copy over TLS with --src-cert-dir" \
  skopeo copy --all --src-cert-dir "$WORK/skopeo-certs" "docker://localhost:$PORT/hello:latest" "oci:$WORK/sk-hello:latest"
check "skopeo copy over TLS keeps the digest" \
  bash -c "[ \"\$(jq -r .manifests[0].digest $WORK/sk-hello/index.json)\" = \"\$(jq -r '.manifests[0].digest' $REG/hello/index.json)\" ]"

# Rotation: replace the pair in place, SIGHUP, and a new handshake shows the new serial.
OLD=$(served_serial)
NEW_DIR=$WORK/certs2
"$ROOT/scripts/make-dev-cert.sh" "$NEW_DIR" >>"$E2E_LOG"
cp "$NEW_DIR/server.key" "$CERTS/server.key.new" && cp "$NEW_DIR/server.crt" "$CERTS/server.crt.new"
mv "$CERTS/server.key.new" "$CERTS/server.key" && mv "$CERTS/server.crt.new" "$CERTS/server.crt"
kill -HUP "$SERVER_PID"
rotated() { for _ in $(seq 1 100); do [ "$(served_serial)" = "$1" ] && return 0; sleep 0.1; done; return 1; }
NEWSERIAL=$(openssl x509 -in "$NEW_DIR/server.crt" -noout -serial | cut -d= -f2)
check "SIGHUP rotates to the new certificate (serial $OLD -> $NEWSERIAL)" rotated "$NEWSERIAL"
check "pulls work with the new CA after rotation" curl -fsS --cacert "$NEW_DIR/ca.crt" -o /dev/null "$URL/v2/hello/manifests/latest"

# A broken replacement (key of another certificate) keeps the pair in service.
cp "$CERTS/../certs2/ca.key" "$CERTS/server.key"
kill -HUP "$SERVER_PID"
check "a broken replacement is reported" bash -c "for i in \$(seq 1 100); do grep -q 'not rotated' $WORK/server.log && exit 0; sleep 0.1; done; exit 1"
check "the previous certificate stays in service" bash -c "[ \"\$(openssl s_client -connect 127.0.0.1:$PORT </dev/null 2>/dev/null | openssl x509 -noout -serial | cut -d= -f2)\" = $NEWSERIAL ]"
check "the server still answers" curl -fsS --cacert "$NEW_DIR/ca.crt" -o /dev/null "$URL/v2/"

# Every PEM private key form: PKCS#8 (above), PKCS#1 RSA, SEC1 EC.
key_form() { # NAME KEYGEN-COMMAND... (the command writes the key to stdout)
  local name=$1 dir=$WORK/form-$1
  shift
  mkdir -p "$dir"
  "$@" >"$dir/server.key" 2>/dev/null || return 1
  openssl req -new -key "$dir/server.key" -subj /CN=localhost -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/ext" -out "$dir/server.crt" 2>/dev/null
  local port
  port=$(free_port)
  start_server "$dir/log" -t tls -c "$dir/server.crt" -k "$dir/server.key" -r "$REG" -p "$port" --bind 127.0.0.1
  wait_http "https://localhost:$port/v2/" --cacert "$CERTS/ca.crt"
}
check "PKCS#1 RSA key (BEGIN RSA PRIVATE KEY)" key_form rsa openssl genrsa -traditional 2048
check "SEC1 EC key (BEGIN EC PRIVATE KEY)" key_form sec1 openssl ecparam -name prime256v1 -genkey -noout
check "the PKCS#1 key really is PKCS#1" grep -q "BEGIN RSA PRIVATE KEY" "$WORK/form-rsa/server.key"
check "the SEC1 key really is SEC1" grep -q "BEGIN EC PRIVATE KEY" "$WORK/form-sec1/server.key"

# Start-up errors name the file and the problem, and never panic.
startup_error() { # EXPECTED ARGS...: the server refuses to start, says EXPECTED, never panics
  local expected=$1 out
  shift
  out=$("$BIN" -t tls -r "$REG" -p 0 --bind 127.0.0.1 "$@" 2>&1) && return 1
  echo "$out"
  ! grep -q panicked <<<"$out" && grep -q "$expected" <<<"$out"
}
check "mismatched pair: clear start-up error" \
  startup_error "does not match the certificate" -c "$CERTS/server.crt" -k "$CERTS/ca.key"
check "missing certificate: names the file" \
  startup_error "none.crt: cannot be read" -c "$WORK/none.crt" -k "$WORK/none.key"
check "missing certificate: says which command creates one" \
  startup_error "scripts/make-dev-cert.sh $WORK" -c "$WORK/none.crt" -k "$WORK/none.key"

# Client certificates (--client-ca, --client-map) with curl --cert -------
CC=$WORK/client-ca
mkdir -p "$CC"
"$ROOT/scripts/make-dev-cert.sh" "$CC/server" >>"$E2E_LOG"   # the pair above was broken on purpose
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=client-ca \
  -keyout "$CC/ca.key" -out "$CC/ca.crt" 2>/dev/null
client_cert() { # CN: writes $CC/CN.crt and $CC/CN.key
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$1" \
    -keyout "$CC/$1.key" -out "$CC/$1.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$CC/ext"
  openssl x509 -req -in "$CC/$1.csr" -CA "$CC/ca.crt" -CAkey "$CC/ca.key" -CAcreateserial -days 2 \
    -extfile "$CC/ext" -out "$CC/$1.crt" 2>/dev/null
}
client_cert ci-runner
client_cert stranger
cat >"$CC/map.json" <<'JSON'
{"clients": [{"name": "ci", "common_name": "ci-runner", "applications": ["hello"]}]}
JSON
CPORT=$(free_port)
start_server "$WORK/client-ca.log" -t tls -c "$CC/server/server.crt" -k "$CC/server/server.key" -r "$REG" -p "$CPORT" \
  --bind 127.0.0.1 --client-ca "$CC/ca.crt" --client-map "$CC/map.json"
CURL_CI=(--cacert "$CC/server/ca.crt" --cert "$CC/ci-runner.crt" --key "$CC/ci-runner.key")
wait_http "https://localhost:$CPORT/readyz" "${CURL_CI[@]}" || { ls -l "$CC"; cat "$WORK/client-ca.log"; }
check "(client cert) curl without a certificate is refused" \
  bash -c "! curl -fsS --cacert $CC/server/ca.crt -o /dev/null https://localhost:$CPORT/v2/"
check "(client cert) curl --cert: the mapped application is served" \
  curl -fsS "${CURL_CI[@]}" -o /dev/null "https://localhost:$CPORT/v2/hello/manifests/latest"
check "(client cert) curl --cert: the catalog lists only the mapped applications" \
  bash -c "[ \"\$(curl -fsS ${CURL_CI[*]} https://localhost:$CPORT/v2/_catalog | jq -c .repositories)\" = '[\"hello\"]' ]"
check "(client cert) curl --cert: another application is NAME_UNKNOWN" \
  bash -c "curl -sS ${CURL_CI[*]} https://localhost:$CPORT/v2/multi/tags/list | jq -e '.errors[0].code == \"NAME_UNKNOWN\"'"
check "(client cert) an unmapped client sees no application" \
  bash -c "[ \"\$(curl -fsS --cacert $CC/server/ca.crt --cert $CC/stranger.crt --key $CC/stranger.key https://localhost:$CPORT/v2/_catalog | jq -c .repositories)\" = '[]' ]"
check "(client cert) the access log names the client's map entry" \
  bash -c "grep access $WORK/client-ca.log | grep -q 'realm=\"\\?ci'"

summary "e2e tls"
