#!/usr/bin/env bash
# Registry authentication end to end, against `-t tls --htpasswd`: podman
# login then pull, skopeo --creds and --authfile, ctr --user, docker login
# then pull (dockerd on a private socket), curl through the token flow;
# and the refusals as distribution's token authentication gives them: a
# wrong password, an expired token, a token for another repository, a
# token signed by another key and a token replayed past its lifetime are
# each 401 UNAUTHORIZED with the challenge's error="invalid_token" or
# "insufficient_scope", and nothing is served.
#
# ir-client with the auth file podman's login wrote pulls as well.
#
# SIGHUP rereads the users and the access map: a user added logs in with
# podman, a removed user's login (remembered by the server) stops working,
# an application taken out of a user's map entry is NAME_UNKNOWN.
#
# Usage: tests/e2e/auth.sh   (needs: openssl curl jq htpasswd skopeo podman
#                             containerd dockerd python3 python3-cryptography)
# Env:   IR_SERVER_BIN, IR_CLIENT_BIN (default target/debug/ir-server, ir-client)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/e2e/lib.sh"

CERTS=$WORK/certs
"$ROOT/scripts/make-dev-cert.sh" "$CERTS" >>"$E2E_LOG"
CA_DIR=$WORK/ca-only && mkdir -p "$CA_DIR" && cp "$CERTS/ca.crt" "$CA_DIR/"
htpasswd -nbB alice secret >"$WORK/htpasswd"
htpasswd -nbB bob hunter2 >>"$WORK/htpasswd"
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/token.key" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/other.key" 2>/dev/null
# alice may pull hello only; bob everything.
cat >"$WORK/access.json" <<'JSON'
{"clients": [{"user": "alice", "applications": ["hello"]}, {"user": "bob"}]}
JSON

PORT=$(free_port)
HOST=localhost:$PORT
start_server "$WORK/server.log" -t tls -c "$CERTS/server.crt" -k "$CERTS/server.key" -r "$REG" \
  -p "$PORT" --bind 127.0.0.1 --htpasswd "$WORK/htpasswd" --token-key "$WORK/token.key" \
  --access-map "$WORK/access.json"
MAIN_PID=$SERVER_PID
wait_http "https://$HOST/readyz" --cacert "$CERTS/ca.crt" || { cat "$WORK/server.log"; exit 1; }
URL=https://$HOST
CURL=(curl -sS --cacert "$CERTS/ca.crt")
HELLO=$(jq -r '.manifests[0].digest' "$REG/hello/index.json")
# hello is an index of linux/amd64 and linux/arm64; ir-client takes amd64 here.
HELLO_AMD64=$(jq -r '.manifests[] | select(.platform.architecture=="amd64") | .digest' "$REG/hello/blobs/sha256/${HELLO#sha256:}")

# status_code_challenge PATH [CURL-ARGS...]: "STATUS CODE WWW-AUTHENTICATE"
answer() {
  local path=$1
  shift
  "${CURL[@]}" -D "$WORK/h" -o "$WORK/b" "$@" "$URL$path" >/dev/null
  printf '%s %s %s\n' "$(awk 'NR==1{print $2}' "$WORK/h")" \
    "$(jq -r '.errors[0].code // empty' "$WORK/b" 2>/dev/null)" \
    "$(grep -i '^www-authenticate:' "$WORK/h" | cut -d' ' -f2- | tr -d '\r')"
}
# refused PATH ERROR [CURL-ARGS...]: 401 UNAUTHORIZED whose challenge
# names the scope and ERROR (or none), and no manifest in the body.
refused() {
  local path=$1 error=$2 got want
  shift 2
  got=$(answer "$path" "$@")
  want="401 UNAUTHORIZED Bearer realm=\"https://$HOST/token\",service=\"$HOST\""
  case $path in
    /v2/) ;;
    /v2/*/manifests/*) local n=${path#/v2/}; want+=",scope=\"repository:${n%/manifests/*}:pull\"" ;;
  esac
  [ -n "$error" ] && want+=",error=\"$error\""
  echo "got:  $got"; echo "want: $want"
  [ "$got" = "$want" ] && ! grep -q schemaVersion "$WORK/b"
}
token_for() { # USER:PASS SCOPE: a token from the server's endpoint
  "${CURL[@]}" -u "$1" "$URL/token?service=$HOST&scope=$2" | jq -r .token
}

# curl: the challenge and the token flow ------------------------------------
check "(curl) no credentials: 401 with the bearer challenge for /v2/" refused /v2/ ""
check "(curl) no credentials: 401 naming the repository scope" refused /v2/hello/manifests/latest ""
check "(curl) Basic credentials are accepted on API requests" \
  bash -c "[ \"\$(${CURL[*]} -u alice:secret -o /dev/null -w '%{http_code}' $URL/v2/hello/manifests/latest)\" = 200 ]"
check "(curl) the token endpoint answers distribution's token response" \
  bash -c "${CURL[*]} -u alice:secret '$URL/token?service=$HOST&scope=repository:hello:pull' \
           | jq -e '(.token == .access_token) and .expires_in == 300 and (.issued_at | endswith(\"Z\"))'"
TOKEN=$(token_for alice:secret repository:hello:pull)
check "(curl) a token pulls its repository" \
  bash -c "[ \"\$(${CURL[*]} -H 'Authorization: Bearer $TOKEN' -o /dev/null -w '%{http_code}' $URL/v2/hello/manifests/latest)\" = 200 ]"
check "(curl) the access log names the user" \
  bash -c "grep access $WORK/server.log | grep 'hello/manifests' | grep -q 'user=\"\\?alice'"
check "(curl) an application alice may not see is NAME_UNKNOWN with Basic, like a missing one" \
  bash -c "${CURL[*]} -u alice:secret $URL/v2/multi/tags/list | jq -e '.errors[0].code == \"NAME_UNKNOWN\"' \
           && [ \"\$(${CURL[*]} -u alice:secret $URL/v2/_catalog | jq -c .repositories)\" = '[\"hello\"]' ]"

# refusals -----------------------------------------------------------------
check "(refused) a wrong password at the token endpoint: 401 UNAUTHORIZED, no token" \
  bash -c "[ \"\$(${CURL[*]} -u alice:wrong -o $WORK/wrong -w '%{http_code}' '$URL/token?service=$HOST&scope=repository:hello:pull')\" = 401 ] \
           && jq -e '.errors[0].code == \"UNAUTHORIZED\" and (.token == null)' $WORK/wrong"
check "(refused) a wrong password on an API request" refused /v2/hello/manifests/latest "" -u alice:wrong
check "(refused) an unknown user" refused /v2/hello/manifests/latest "" -u mallory:secret
check "(refused) a token for another repository: insufficient_scope" \
  refused /v2/multi/manifests/latest insufficient_scope -H "Authorization: Bearer $TOKEN"
check "(refused) a token for a repository the user may not see is not granted" \
  refused /v2/multi/manifests/latest insufficient_scope \
  -H "Authorization: Bearer $(token_for alice:secret repository:multi:pull)"
MINT=(python3 "$ROOT/tests/e2e/mint-token.py")
check "(control) a token minted with the server's key is accepted" \
  bash -c "[ \"\$(${CURL[*]} -H \"Authorization: Bearer \$(${MINT[*]} $WORK/token.key $HOST $HOST bob hello 0 300)\" \
           -o /dev/null -w '%{http_code}' $URL/v2/hello/manifests/latest)\" = 200 ]"
check "(refused) an expired token: invalid_token" \
  refused /v2/hello/manifests/latest invalid_token \
  -H "Authorization: Bearer $("${MINT[@]}" "$WORK/token.key" "$HOST" "$HOST" bob hello -1000 300)"
check "(refused) a token signed by another key: invalid_token" \
  refused /v2/hello/manifests/latest invalid_token \
  -H "Authorization: Bearer $("${MINT[@]}" "$WORK/other.key" "$HOST" "$HOST" bob hello 0 300)"
check "(refused) a token for another service: invalid_token" \
  refused /v2/hello/manifests/latest invalid_token \
  -H "Authorization: Bearer $("${MINT[@]}" "$WORK/token.key" "$HOST" other.registry bob hello 0 300)"

# A token replayed past its lifetime (a second server, tokens of 2 s).
SPORT=$(free_port)
start_server "$WORK/short.log" -t tls -c "$CERTS/server.crt" -k "$CERTS/server.key" -r "$REG" \
  -p "$SPORT" --bind 127.0.0.1 --htpasswd "$WORK/htpasswd" --token-ttl 2 --registry-host "localhost:$SPORT"
wait_http "https://localhost:$SPORT/readyz" --cacert "$CERTS/ca.crt"
replayed() {
  local t code
  t=$("${CURL[@]}" -u bob:hunter2 "https://localhost:$SPORT/token?service=localhost:$SPORT&scope=repository:hello:pull" | jq -r .token)
  code=$("${CURL[@]}" -H "Authorization: Bearer $t" -o /dev/null -w '%{http_code}' "https://localhost:$SPORT/v2/hello/manifests/latest")
  [ "$code" = 200 ] || return 1
  sleep 3
  "${CURL[@]}" -D "$WORK/rh" -o "$WORK/rb" -H "Authorization: Bearer $t" "https://localhost:$SPORT/v2/hello/manifests/latest"
  head -1 "$WORK/rh" | grep -q ' 401' && grep -qi 'error="invalid_token"' "$WORK/rh" \
    && jq -e '.errors[0].code == "UNAUTHORIZED"' "$WORK/rb" && ! grep -q schemaVersion "$WORK/rb"
}
check "(refused) a token replayed past its 2 s lifetime: invalid_token" replayed

# podman -------------------------------------------------------------------
PM=(podman --root "$WORK/podman" --runroot "$WORK/podman-run" --storage-driver vfs)
AUTHFILE=$WORK/auth.json
check "podman login with a wrong password fails" \
  bash -c "! ${PM[*]} login --cert-dir $CA_DIR --authfile $AUTHFILE -u alice -p wrong $HOST"
check "podman login" "${PM[@]}" login --cert-dir "$CA_DIR" --authfile "$AUTHFILE" -u alice -p secret "$HOST"
check "podman pull after login" "${PM[@]}" pull --cert-dir "$CA_DIR" --authfile "$AUTHFILE" "$HOST/hello:latest"
check "podman pulled the source digest" \
  bash -c "${PM[*]} image inspect $HOST/hello:latest --format '{{.Digest}}' | grep -q $HELLO"
check "podman pull of an application alice may not see fails" \
  bash -c "! ${PM[*]} pull --cert-dir $CA_DIR --authfile $AUTHFILE $HOST/multi:latest"
echo '{"auths": {}}' >"$WORK/none.json"
refused_pull() { # podman pull fails, saying unauthorized
  local out
  out=$("${PM[@]}" pull --cert-dir "$CA_DIR" --authfile "$WORK/none.json" "$HOST/hello:latest" 2>&1) && return 1
  echo "$out"
  grep -qi unauthorized <<<"$out"
}
check "podman pull without login fails" refused_pull

# skopeo -------------------------------------------------------------------
SK=(skopeo --override-os linux --override-arch amd64)
check "skopeo copy --src-creds" \
  "${SK[@]}" copy --all --src-cert-dir "$CA_DIR" --src-creds alice:secret "docker://$HOST/hello:latest" "oci:$WORK/sk-creds:latest"
check "skopeo copy --src-creds keeps the digest" \
  bash -c "[ \"\$(jq -r .manifests[0].digest $WORK/sk-creds/index.json)\" = $HELLO ]"
check "skopeo inspect --authfile (podman's login)" \
  bash -c "[ \"\$(${SK[*]} inspect --cert-dir $CA_DIR --authfile $AUTHFILE docker://$HOST/hello:latest | jq -r .Digest)\" = $HELLO ]"
check "skopeo with a wrong password fails" \
  bash -c "! ${SK[*]} inspect --cert-dir $CA_DIR --creds alice:wrong docker://$HOST/hello:latest"

# ir-client with the auth file podman's login wrote -------------------------
CLIENT=${IR_CLIENT_BIN:-$ROOT/target/debug/ir-client}
irc() { env -u REGISTRY_AUTH_FILE HOME="$WORK" "$CLIENT" "$@" --ca "$CERTS/ca.crt" --retries 0; }
irc_ls() { irc ls "$URL/hello" --authfile "$AUTHFILE" | grep -qx latest; }
irc_pull() {
  irc pull "$URL/hello:latest" --out "$WORK/irc-out" --authfile "$AUTHFILE" -q \
    && [ "$(jq -r .manifests[0].digest "$WORK/irc-out/index.json")" = "$HELLO_AMD64" ]
}
irc_refused() { # ARGS...: ir-client fails, and says why (401 or not found)
  local out
  out=$(irc "$@" 2>&1) && return 1
  echo "$out"
  grep -Eqi "401|unauthori|not found|unknown|denied" <<<"$out"
}
check "ir-client ls with --authfile" irc_ls
check "ir-client pull with --authfile keeps the digest" irc_pull
check "ir-client without credentials is refused" irc_refused ls "$URL/hello"
check "ir-client with alice's file cannot see multi" irc_refused ls "$URL/multi" --authfile "$AUTHFILE"

# containerd ---------------------------------------------------------------
CT=$WORK/containerd
mkdir -p "$CT"
cat >"$CT/config.toml" <<TOML
version = 2
root = "$CT/root"
state = "$CT/state"
[grpc]
  address = "$CT/containerd.sock"
TOML
containerd --config "$CT/config.toml" >"$CT/log" 2>&1 &
PIDS+=($!)
# ctr takes localhost for plain HTTP unless a hosts.toml says https.
mkdir -p "$CT/hosts/$HOST"
cat >"$CT/hosts/$HOST/hosts.toml" <<TOML
server = "https://$HOST"
[host."https://$HOST"]
  capabilities = ["pull", "resolve"]
  ca = "$CERTS/ca.crt"
TOML
CTR=(ctr --address "$CT/containerd.sock")
for _ in $(seq 1 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
check "ctr pull --user" "${CTR[@]}" images pull --hosts-dir "$CT/hosts" --user bob:hunter2 "$HOST/hello:latest"
check "ctr pulled the source digest" bash -c "${CTR[*]} images ls | grep $HOST/hello:latest | grep -q $HELLO"
check "ctr pull with a wrong password fails" \
  bash -c "! ${CTR[*]} images pull --hosts-dir $CT/hosts --user bob:wrong $HOST/multi:latest"

# docker -------------------------------------------------------------------
DK=$WORK/docker
mkdir -p "$DK/cfg"
# localhost registries are "insecure" to dockerd: TLS without verification.
dockerd --host "unix://$DK/docker.sock" --data-root "$DK/root" --exec-root "$DK/exec" \
  --pidfile "$DK/docker.pid" --bridge=none --iptables=false --ip6tables=false \
  --storage-driver vfs --insecure-registry "$HOST" >"$DK/log" 2>&1 &
PIDS+=($!)
DOCKER=(docker --host "unix://$DK/docker.sock" --config "$DK/cfg")
for _ in $(seq 1 300); do "${DOCKER[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
check "docker login with a wrong password fails" \
  bash -c "! echo wrong | ${DOCKER[*]} login -u alice --password-stdin $HOST"
check "docker login" bash -c "echo secret | ${DOCKER[*]} login -u alice --password-stdin $HOST"
check "docker pull after login" "${DOCKER[@]}" pull "$HOST/hello:latest"
check "docker pulled the source digest" \
  bash -c "${DOCKER[*]} image inspect $HOST/hello:latest --format '{{json .RepoDigests}}' | grep -q $HELLO"
check "docker pull of an application alice may not see fails" bash -c "! ${DOCKER[*]} pull $HOST/multi:latest"

# SIGHUP: users and the access map read again ------------------------------
{ htpasswd -nbB bob hunter2; htpasswd -nbB carol s3cret; } >"$WORK/htpasswd.new"
mv "$WORK/htpasswd.new" "$WORK/htpasswd"   # alice removed, carol added
cat >"$WORK/access.new" <<'JSON'
{"clients": [{"user": "carol", "applications": ["hello"]}, {"user": "bob", "applications": ["multi"]}]}
JSON
mv "$WORK/access.new" "$WORK/access.json"
kill -HUP "$MAIN_PID"
for _ in $(seq 1 100); do
  grep -q 'reloaded --htpasswd' "$WORK/server.log" && grep -q 'reloaded --access-map' "$WORK/server.log" && break
  sleep 0.1
done
check "(SIGHUP) the reread is logged" grep -q 'reloaded --htpasswd .*2 user(s): +1 added, -1 removed' "$WORK/server.log"
check "(SIGHUP) a new user logs in and pulls with podman" \
  bash -c "${PM[*]} login --cert-dir $CA_DIR --authfile $WORK/carol.json -u carol -p s3cret $HOST \
           && ${PM[*]} pull --cert-dir $CA_DIR --authfile $WORK/carol.json $HOST/hello:latest"
check "(SIGHUP) a removed user's remembered password is refused" \
  refused /v2/hello/manifests/latest "" -u alice:secret
check "(SIGHUP) skopeo with the removed user's podman login fails" \
  bash -c "! skopeo inspect --cert-dir $CA_DIR --authfile $AUTHFILE docker://$HOST/hello:latest"
check "(SIGHUP) an application taken out of the map is NAME_UNKNOWN and left out of the catalog" \
  bash -c "${CURL[*]} -u bob:hunter2 $URL/v2/hello/tags/list | jq -e '.errors[0].code == \"NAME_UNKNOWN\"' \
           && [ \"\$(${CURL[*]} -u bob:hunter2 $URL/v2/_catalog | jq -c .repositories)\" = '[\"multi\"]' ]"
printf 'bob:$apr1$x$y\n' >"$WORK/htpasswd.new" && mv "$WORK/htpasswd.new" "$WORK/htpasswd"
kill -HUP "$MAIN_PID"
for _ in $(seq 1 100); do grep -q 'the previous --htpasswd stays in force' "$WORK/server.log" && break; sleep 0.1; done
check "(SIGHUP) a broken user file is refused naming the line; the previous one stays" \
  bash -c "grep -q 'htpasswd:1: user \"bob\": only bcrypt.*the previous --htpasswd stays in force' $WORK/server.log \
           && [ \"\$(${CURL[*]} -u carol:s3cret -o /dev/null -w '%{http_code}' $URL/v2/hello/manifests/latest)\" = 200 ]"

summary "e2e auth"
