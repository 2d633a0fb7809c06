#!/usr/bin/env bash
# `ir-client sync` from a real registry: Debian's docker-registry
# (distribution 2.8, no referrers API) with htpasswd Basic auth over TLS,
# filled by skopeo: the example hello image signed with ir-sign in
# cosign's tag form (app) and in the referrers form (refsigned), and the
# multi-arch index with its SBOM artifact (referrers are listed through
# the referrers tag schema `sha256-<hex>`, as distribution 2.8 needs). Synced from a skopeo-sync-shaped YAML file into
# a root that `ir-server --check --policy` accepts, that ir-server serves
# (podman pulls and runs from it, the referrers API lists the SBOM), that
# a second sync leaves as it is, and that a sync killed midway leaves
# servable; a sync with --policy writes nothing of an unsigned image. Then
# the same registry with token auth (tests/e2e/token-server.py issuing the
# JWTs it validates) as a source.
#
# Usage: tests/e2e/sync.sh   (needs: docker-registry htpasswd skopeo podman
#        openssl curl jq; builds nothing)
# Env:   IR_CLIENT_BIN (default target/debug/ir-client), IR_SERVER_BIN,
#        IR_SIGN_BIN (default target/debug/ir-sign)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLIENT=${IR_CLIENT_BIN:-$ROOT/target/debug/ir-client}
SIGN=${IR_SIGN_BIN:-$ROOT/target/debug/ir-sign}
. "$ROOT/tests/e2e/lib.sh"

for tool in docker-registry htpasswd skopeo podman jq curl; do
  command -v "$tool" >/dev/null || { echo "sync: needs $tool"; exit 1; }
done
SK=(skopeo --override-os linux --override-arch amd64)
export COSIGN_PASSWORD=e2e-password

distribution_credentials

# The source registry ------------------------------------------------------
PORT=$(free_port)
DIST=127.0.0.1:$PORT
start_distribution registry "$DIST" "$DISTRIBUTION_HTPASSWD_AUTH" || exit 1
CREDS=(--dest-cert-dir "$WORK/cadir" --dest-creds "$USER_NAME:$PASSWORD")
CURL=(curl -fsS --cacert "$CERTS/ca.crt" -u "$USER_NAME:$PASSWORD")

# ir-server's port is chosen first: the signature names HOST/app:1.
SPORT=$(free_port)
HOST=127.0.0.1:$SPORT

check "skopeo pushes hello as app:1" \
  "${SK[@]}" copy -q --all --preserve-digests "${CREDS[@]}" "oci:$REG/hello:latest" "docker://$DIST/app:1"
check "skopeo pushes the multi-arch index as team/multi:latest" \
  "${SK[@]}" copy -q --all --preserve-digests "${CREDS[@]}" "oci:$REG/multi:latest" "docker://$DIST/team/multi:latest"

# app:1 signed in cosign's tag form, the .sig tag pushed beside it.
"$SIGN" generate-key-pair --output-dir "$WORK/keys" >>"$E2E_LOG" 2>&1 || { echo "ir-sign generate-key-pair failed"; exit 1; }
DIGEST=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="latest") | .digest' "$REG/hello/index.json" | head -1)
SIG_TAG=sha256-${DIGEST#sha256:}.sig
"${SK[@]}" copy -q --all --preserve-digests "oci:$REG/hello:latest" "oci:$WORK/scratch:1" >>"$E2E_LOG" 2>&1
check "ir-sign signs app:1 for $HOST/app:1 (tag form)" \
  "$SIGN" sign --key "$WORK/keys/cosign.key" --layout "$WORK/scratch" --tag 1 --reference "$HOST/app:1" --mode tag
check "skopeo pushes the .sig tag" \
  "${SK[@]}" copy -q --preserve-digests "${CREDS[@]}" "oci:$WORK/scratch:$SIG_TAG" "docker://$DIST/app:$SIG_TAG"

# Referrers pushed by digest with their blobs, and the referrers tag
# schema's index naming them (distribution 2.8 has no referrers API).
push_referrers() { # LAYOUT REPO SUBJECT REFERRER...
  local layout=$1 repo=$2 subject=$3 r d loc sep file
  shift 3
  local entries=()
  for r in "$@"; do
    file=$layout/blobs/sha256/${r#sha256:}
    for d in $(jq -r '.config.digest, .layers[].digest' "$file"); do
      # An upload session, then its content in one PUT.
      loc=$("${CURL[@]}" -o /dev/null -D - -X POST "https://$DIST/v2/$repo/blobs/uploads/" |
        tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
      case $loc in http*) ;; *) loc="https://$DIST$loc" ;; esac
      case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
      "${CURL[@]}" -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$layout/blobs/sha256/${d#sha256:}" "$loc${sep}digest=$d" || return 1
    done
    "${CURL[@]}" -o /dev/null -X PUT -H "Content-Type: $(jq -r .mediaType "$file")" \
      --data-binary "@$file" "https://$DIST/v2/$repo/manifests/$r" || return 1
    entries+=("$(jq -c --arg d "$r" --argjson s "$(stat -c %s "$file")" \
      '{mediaType: .mediaType, digest: $d, size: $s, artifactType: (.artifactType // .config.mediaType)}' "$file")")
  done
  printf '%s\n' "${entries[@]}" | jq -s '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: .}' \
    >"$WORK/fallback.json"
  "${CURL[@]}" -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
    --data-binary "@$WORK/fallback.json" "https://$DIST/v2/$repo/manifests/sha256-${subject#sha256:}"
}
# multi's SBOM artifact.
ARTIFACT=$(jq -r '.manifests[] | select(.artifactType != null) | .digest' "$REG/multi/index.json" | head -1)
SUBJECT=$(jq -r .subject.digest "$REG/multi/blobs/sha256/${ARTIFACT#sha256:}")
check "the SBOM referrer and its tag-schema index are pushed" \
  push_referrers "$REG/multi" team/multi "$SUBJECT" "$ARTIFACT"
# refsigned:1, signed by ir-sign in the referrers form.
check "skopeo pushes hello as refsigned:1" \
  "${SK[@]}" copy -q --all --preserve-digests "${CREDS[@]}" "oci:$REG/hello:latest" "docker://$DIST/refsigned:1"
"${SK[@]}" copy -q --all --preserve-digests "oci:$REG/hello:latest" "oci:$WORK/scratch3:1" >>"$E2E_LOG" 2>&1
check "ir-sign signs refsigned:1 for $HOST/refsigned:1 (referrers form)" \
  "$SIGN" sign --key "$WORK/keys/cosign.key" --layout "$WORK/scratch3" --tag 1 --reference "$HOST/refsigned:1" --mode referrers
SIG_REF=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == null) | .digest' "$WORK/scratch3/index.json" | head -1)
check "the signature referrer and its tag-schema index are pushed" \
  push_referrers "$WORK/scratch3" refsigned "$DIGEST" "$SIG_REF"

# Sync ---------------------------------------------------------------------
AUTH=$WORK/auth.json
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$DIST" \
  "$(printf '%s:%s' "$USER_NAME" "$PASSWORD" | base64 -w0)" >"$AUTH"
cat >"$WORK/sync.yaml" <<EOF
$DIST:
  images:
    app: []
    refsigned: []
    team/multi: [latest]
  tls-verify: true
EOF
SROOT=$WORK/root
sync() { # ARGS...: ir-client sync with the CA and the auth file
  "$CLIENT" sync --ca "$CERTS/ca.crt" --authfile "$AUTH" --retries 0 -q "$@"
}
policy() { # FILE: app signed by the key, team/multi accepted as is
  cat >"$1" <<JSON
{"default":[{"type":"reject"}],"transports":{"docker":{
  "$HOST/app":[{"type":"sigstoreSigned","keyPath":"$WORK/keys/cosign.pub"}],
  "$HOST/refsigned":[{"type":"sigstoreSigned","keyPath":"$WORK/keys/cosign.pub"}],
  "$HOST/team/multi":[{"type":"insecureAcceptAnything"}]}}}
JSON
}
policy "$WORK/policy.json"

env -u REGISTRY_AUTH_FILE -u XDG_RUNTIME_DIR -u XDG_CONFIG_HOME HOME="$WORK/nohome" \
  "$CLIENT" sync --ca "$CERTS/ca.crt" --retries 0 -q --root "$WORK/none" "https://$DIST/app" >>"$E2E_LOG" 2>&1
NOAUTH_RC=$?
check "without credentials the sync fails (exit 3), nothing written" \
  bash -c "[ $NOAUTH_RC -eq 3 ] && ! [ -e $WORK/none/app ]"
sync --root "$SROOT" --file "$WORK/sync.yaml" --format json >"$WORK/first.json" 2>>"$E2E_LOG"
check "the first sync adds the three repositories" \
  jq -e '[.repositories[].status] == ["added", "added", "added"]' "$WORK/first.json"
check "app's .sig tag and multi's SBOM referrer are in the root" \
  bash -c "jq -e --arg s $SIG_TAG '[.manifests[].annotations[\"org.opencontainers.image.ref.name\"]] | index(\$s) != null' $SROOT/app/index.json &&
           jq -e --arg a $ARTIFACT '[.manifests[].digest] | index(\$a) != null' $SROOT/team/multi/index.json"
"$BIN" --check -r "$SROOT" --policy "$WORK/policy.json" --registry-host "$HOST" >"$WORK/check.txt" 2>&1
CHECK_RC=$?
cat "$WORK/check.txt" >>"$E2E_LOG"
check "ir-server --check --policy accepts the synced root" test "$CHECK_RC" -eq 0
check "--check: app:1 accepted, signed (tag form)" grep -Eq "^accepted +app:1 signed by sha256:" "$WORK/check.txt"
check "--check: refsigned:1 accepted, signed (referrers form)" grep -Eq "^accepted +refsigned:1 signed by sha256:" "$WORK/check.txt"

sync --root "$SROOT" --file "$WORK/sync.yaml" --format json >"$WORK/second.json" 2>>"$E2E_LOG"
check "a second sync changes nothing and downloads nothing" \
  jq -e '([.repositories[].status] == ["unchanged", "unchanged", "unchanged"]) and ([.repositories[].bytesDownloaded] | add == 0)' "$WORK/second.json"

# Served ---------------------------------------------------------------------
start_server "$WORK/server.log" -r "$SROOT" -p "$SPORT" --bind 127.0.0.1 --policy "$WORK/policy.json" --registry-host "$HOST" -t no-tls --watch
wait_http "http://$HOST/v2/" || { cat "$WORK/server.log"; exit 1; }
check "the referrers API of the served copy lists the SBOM" \
  bash -c "curl -fsS http://$HOST/v2/team/multi/referrers/$SUBJECT | jq -e --arg d $ARTIFACT '.manifests | map(.digest) | index(\$d) != null'"
PM=(podman --root "$WORK/podman" --runroot "$WORK/podman-run" --storage-driver vfs)
RUN=(run --rm --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none --cgroup-manager cgroupfs)
check "podman pulls app:1 from the synced root" "${PM[@]}" pull -q --tls-verify=false "$HOST/app:1"
check "podman runs it" \
  bash -c "${PM[*]} ${RUN[*]} $HOST/app:1 | grep -q 'Hello from the ir-server example registry'"
check "podman pulls the multi-arch team/multi:latest" "${PM[@]}" pull -q --tls-verify=false "$HOST/team/multi:latest"

# Killed (0.3 s in, wherever it is then): the served root stays whole, the
# next run finishes. (A kill mid-blob is tested deterministically in
# crates/ir-client/tests/sync.rs with an upstream that cuts a blob.) ------
check "skopeo pushes app:2 (the multi-arch index)" \
  "${SK[@]}" copy -q --all --preserve-digests "${CREDS[@]}" "oci:$REG/multi:latest" "docker://$DIST/app:2"
"${SK[@]}" copy -q --all --preserve-digests "oci:$REG/multi:latest" "oci:$WORK/scratch2:2" >>"$E2E_LOG" 2>&1
INDEX=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="latest") | .digest' "$REG/multi/index.json" | head -1)
check "ir-sign signs app:2 (tag form) and skopeo pushes its .sig tag" \
  bash -c "'$SIGN' sign --key '$WORK/keys/cosign.key' --layout '$WORK/scratch2' --tag 2 --reference '$HOST/app:2' --mode tag &&
           ${SK[*]} copy -q --preserve-digests ${CREDS[*]} oci:$WORK/scratch2:sha256-${INDEX#sha256:}.sig docker://$DIST/app:sha256-${INDEX#sha256:}.sig"
sync --root "$SROOT" --file "$WORK/sync.yaml" >>"$E2E_LOG" 2>&1 &
KILLED=$!
sleep 0.3
kill -9 "$KILLED" 2>/dev/null
wait "$KILLED" 2>/dev/null
check "after a killed sync, ir-server --check still accepts the root" \
  "$BIN" --check -r "$SROOT" --policy "$WORK/policy.json" --registry-host "$HOST"
check "app:1 is still served after the killed sync" \
  curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$HOST/v2/app/manifests/1"
sync --root "$SROOT" --file "$WORK/sync.yaml" --format json >"$WORK/third.json" 2>>"$E2E_LOG"
check "the next sync finishes (app:2 in place, no staging left)" \
  bash -c "jq -e '.repositories[0].error == null' $WORK/third.json &&
           jq -e '[.manifests[].annotations[\"org.opencontainers.image.ref.name\"]] | index(\"2\") != null' $SROOT/app/index.json &&
           ! ls -a $SROOT | grep -q '^.sync-staging'"
check "the server (--watch) serves app:2" \
  bash -c "for _ in \$(seq 1 100); do curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.index.v1+json' http://$HOST/v2/app/manifests/2 && exit 0; sleep 0.1; done; exit 1"

# With --policy, refused images are not written -------------------------------
cat >"$WORK/strict.json" <<JSON
{"default":[{"type":"reject"}],"transports":{"docker":{"$HOST":[{"type":"sigstoreSigned","keyPath":"$WORK/keys/cosign.pub"}]}}}
JSON
sync --root "$WORK/strict" --file "$WORK/sync.yaml" --policy "$WORK/strict.json" --registry-host "$HOST" --format json >"$WORK/strict.out" 2>>"$E2E_LOG"
STRICT_RC=$?
cat "$WORK/strict.out" >>"$E2E_LOG"
check "sync --policy exits 6 when it refuses an image" test "$STRICT_RC" -eq 6
check "sync --policy wrote the signed app:1 and app:2, nothing of the unsigned team/multi" \
  bash -c "jq -e '.repositories[0].tagsAdded == [\"1\", \"2\"] and .repositories[1].tagsAdded == [\"1\"] and (.repositories[0].refused | length) == 0 and (.repositories[2].refused | length) == 1' $WORK/strict.out &&
           ! [ -e $WORK/strict/team/multi ]"

# A registry with token auth: docker-registry validating the JWTs that
# tests/e2e/token-server.py issues to Basic credentials ----------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$WORK/token-sign.key" -out "$WORK/token-sign.crt" -subj "/CN=e2e token issuer" 2>>"$E2E_LOG"
TPORT=$(free_port)
python3 "$ROOT/tests/e2e/token-server.py" --port "$TPORT" --cert "$CERTS/server.crt" --key "$CERTS/server.key" \
  --sign-cert "$WORK/token-sign.crt" --sign-key "$WORK/token-sign.key" --issuer e2e-issuer \
  --user "$USER_NAME" --password "$PASSWORD" 2>>"$WORK/token.log" &
PIDS+=("$!")
TOKDIST=127.0.0.1:$(free_port)
start_distribution token-registry "$TOKDIST" "  token:
    realm: https://127.0.0.1:$TPORT/token
    service: e2e-registry
    issuer: e2e-issuer
    rootcertbundle: $WORK/token-sign.crt" || exit 1
check "skopeo pushes hello through the token flow" \
  "${SK[@]}" copy -q --preserve-digests --dest-cert-dir "$WORK/cadir" --dest-creds "$USER_NAME:$PASSWORD" \
  "oci:$REG/hello:latest" "docker://$TOKDIST/tokened:1"
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$TOKDIST" \
  "$(printf '%s:%s' "$USER_NAME" "$PASSWORD" | base64 -w0)" >"$WORK/token-auth.json"
"$CLIENT" sync --ca "$CERTS/ca.crt" --authfile "$WORK/token-auth.json" --retries 0 -q \
  --root "$WORK/tokroot" "https://$TOKDIST/tokened" >>"$E2E_LOG" 2>&1
TOK_RC=$?
check "sync through the token flow (a JWT for Basic credentials)" \
  bash -c "[ $TOK_RC -eq 0 ] && '$BIN' --check -r $WORK/tokroot >/dev/null 2>&1"
env -u REGISTRY_AUTH_FILE -u XDG_RUNTIME_DIR -u XDG_CONFIG_HOME HOME="$WORK/nohome" \
  "$CLIENT" sync --ca "$CERTS/ca.crt" --retries 0 -q --root "$WORK/tokroot2" "https://$TOKDIST/tokened" >>"$E2E_LOG" 2>&1
TOK_NOAUTH_RC=$?
check "without credentials the token endpoint refuses: exit 3, nothing written" \
  bash -c "[ $TOK_NOAUTH_RC -eq 3 ] && ! [ -e $WORK/tokroot2/tokened ]"

summary "e2e sync"
