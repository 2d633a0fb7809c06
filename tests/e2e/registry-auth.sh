#!/usr/bin/env bash
# ir-client against a real registry that asks for credentials: Debian's
# docker-registry (distribution) with htpasswd (bcrypt) Basic auth over
# TLS, the hello image pushed with skopeo. `ir-client ls`, `manifest` and
# `pull` with --authfile (and REGISTRY_AUTH_FILE, and a credential
# helper); without credentials or with a wrong password the registry
# refuses (exit 3) and the password shows nowhere.
#
# Usage: tests/e2e/registry-auth.sh   (needs: docker-registry htpasswd
#        skopeo openssl curl jq; builds nothing)
# Env:   IR_CLIENT_BIN (default target/debug/ir-client)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLIENT=${IR_CLIENT_BIN:-$ROOT/target/debug/ir-client}
. "$ROOT/tests/e2e/lib.sh"

for tool in docker-registry htpasswd skopeo jq; do
  command -v "$tool" >/dev/null || { echo "registry-auth: needs $tool"; exit 1; }
done

distribution_credentials
PORT=$(free_port)
start_distribution registry "127.0.0.1:$PORT" "$DISTRIBUTION_HTPASSWD_AUTH" || exit 1

URL=https://127.0.0.1:$PORT
check "skopeo pushes hello with the password" \
  skopeo copy -q --all --dest-cert-dir "$WORK/cadir" --dest-creds "$USER_NAME:$PASSWORD" \
  "oci:$REG/hello:latest" "docker://127.0.0.1:$PORT/hello:latest"

AUTH=$WORK/auth.json
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$PORT" \
  "$(printf '%s:%s' "$USER_NAME" "$PASSWORD" | base64 -w0)" >"$AUTH"
WRONG=$WORK/wrong.json
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$PORT" \
  "$(printf '%s:%s' "$USER_NAME" 'Wr0ng-e2e-pw' | base64 -w0)" >"$WRONG"
EMPTY_HOME=$WORK/home
mkdir -p "$EMPTY_HOME"
irc() { # no auth file but the one given
  env -u REGISTRY_AUTH_FILE -u XDG_RUNTIME_DIR -u XDG_CONFIG_HOME HOME="$EMPTY_HOME" \
    "$CLIENT" "$@" --ca "$CERTS/ca.crt" --retries 0
}
export -f irc
export CLIENT CERTS EMPTY_HOME

check "ir-client ls with --authfile" \
  bash -c "[ \"\$(irc ls $URL/hello --authfile $AUTH)\" = latest ]"
check "ir-client manifest with --authfile matches skopeo's digest" \
  bash -c "[ \"\$(irc manifest $URL/hello:latest --authfile $AUTH | sha256sum | cut -d' ' -f1)\" = \"\$(skopeo inspect --raw oci:$REG/hello:latest | sha256sum | cut -d' ' -f1)\" ]"
check "ir-client pull with --authfile writes a layout skopeo reads" \
  bash -c "irc pull $URL/hello:latest --out $WORK/out --authfile $AUTH -q && skopeo inspect --raw oci:$WORK/out:latest >/dev/null"
check "REGISTRY_AUTH_FILE stands for --authfile" \
  bash -c "REGISTRY_AUTH_FILE=$AUTH env HOME=$EMPTY_HOME $CLIENT ls $URL/hello --ca $CERTS/ca.crt | grep -qx latest"
check "~/.docker/config.json is read by default" \
  bash -c "mkdir -p $WORK/dhome/.docker && cp $AUTH $WORK/dhome/.docker/config.json && env -u REGISTRY_AUTH_FILE -u XDG_RUNTIME_DIR -u XDG_CONFIG_HOME HOME=$WORK/dhome $CLIENT ls $URL/hello --ca $CERTS/ca.crt | grep -qx latest"

# A credential helper answering for this registry only.
mkdir -p "$WORK/bin"
cat >"$WORK/bin/docker-credential-e2e" <<EOF
#!/bin/sh
read -r host || [ -n "\$host" ]
[ "\$host" = "127.0.0.1:$PORT" ] || { echo "credentials not found in native keychain"; exit 1; }
echo '{"ServerURL":"'"\$host"'","Username":"$USER_NAME","Secret":"$PASSWORD"}'
EOF
chmod +x "$WORK/bin/docker-credential-e2e"
printf '{"credHelpers":{"127.0.0.1:%s":"e2e"}}\n' "$PORT" >"$WORK/helper.json"
check "a credential helper's credentials (credHelpers)" \
  bash -c "PATH=$WORK/bin:\$PATH irc ls $URL/hello --authfile $WORK/helper.json | grep -qx latest"

refused() { # EXPECTED-STATUS ARGS...: the status, and no password in stderr
  local want=$1
  shift
  irc "$@" 2>"$WORK/err" >/dev/null
  local got=$?
  cat "$WORK/err" >>"$E2E_LOG"
  [ "$got" = "$want" ] && grep -q 'HTTP 401' "$WORK/err" &&
    ! grep -q -e "$PASSWORD" -e 'Wr0ng-e2e-pw' -e "$(printf '%s:%s' "$USER_NAME" 'Wr0ng-e2e-pw' | base64 -w0)" "$WORK/err"
}
export -f refused
export WORK PASSWORD USER_NAME
check "without credentials: refused (exit 3)" \
  refused 3 ls "$URL/hello"
check "a wrong password: refused (exit 3), the password shown nowhere" \
  refused 3 pull "$URL/hello:latest" --out "$WORK/out2" --authfile "$WRONG" -v
check "nothing written after a refusal" \
  test ! -e "$WORK/out2/index.json"

summary "e2e registry-auth"
