#!/usr/bin/env bash
# Signature policy end to end, with a signer and verifier that are not
# ir-server's (ir-sign, on sigstore-rs): an image pushed to a local CNCF
# reference registry (docker-registry) is signed in cosign's tag form, its
# .sig tag pushed next to it, and both copied into the served root with
# skopeo; an unsigned copy sits beside it. ir-server with a
# containers-policy.json serves the signed image (pulled and verified again
# by ir-sign with the .sig tag pulled too) and not the unsigned one; an
# image signed in cosign's referrers form is served and verifies after a
# pull; one signed as cosign v3 writes sigstore bundles (naming no image)
# is refused, with its bundle; a policy with another key refuses all;
# a restart with --signature-cache recalls the signatures it verified;
# an image signed keyless (a Fulcio certificate and a Rekor entry, from the
# test kit's CA and log key) is served and pulled under a fulcio policy and
# refused under one with another e-mail. (The real published keyless
# signature of containers/image's fixtures is verified by ir-trust's tests:
# its image's layers are not published, so it cannot be served whole.)
#
# Usage: tests/e2e/signatures.sh   (needs: docker-registry skopeo jq curl)
# Env:   IR_SERVER_BIN  server binary (default target/debug/ir-server)
#        IR_KEYLESS_BIN keyless test signer (default target/debug/keyless-sign)
#        IR_SIGN_BIN    signer binary (default target/debug/ir-sign)
#        IR_CLIENT_BIN  client binary (default target/debug/ir-client)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/e2e/lib.sh"
SIGN=${IR_SIGN_BIN:-$ROOT/target/debug/ir-sign}
SK=(skopeo --override-os linux --override-arch amd64)
export COSIGN_PASSWORD=e2e-password

# Keys: the trusted one and another.
"$SIGN" generate-key-pair --output-dir "$WORK/keys" >>"$E2E_LOG" 2>&1 || { echo "ir-sign generate-key-pair failed"; exit 1; }
"$SIGN" generate-key-pair --output-dir "$WORK/other-keys" >>"$E2E_LOG" 2>&1 || exit 1

# ir-server's port is chosen first: the signatures name HOST/APP:TAG.
PORT=$(free_port)
HOST=127.0.0.1:$PORT

# A local reference registry holding the image ---------------------------
REG_PORT=$(free_port)
DIST=127.0.0.1:$REG_PORT
mkdir -p "$WORK/distribution"
cat >"$WORK/distribution.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/distribution
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $DIST
YAML
docker-registry serve "$WORK/distribution.yml" >"$WORK/distribution.log" 2>&1 &
PIDS+=($!)
wait_http "http://$DIST/v2/" || { cat "$WORK/distribution.log"; exit 1; }

check "skopeo copy the example image into docker-registry as app:1" \
  "${SK[@]}" copy -q --preserve-digests --dest-tls-verify=false "oci:$REG/team/tools:latest" "docker://$DIST/app:1"
DIGEST=$(jq -r --arg t latest '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) | .digest' "$REG/team/tools/index.json" | head -1)
SIG_TAG=sha256-${DIGEST#sha256:}.sig

# Signed in cosign's tag form in a scratch layout, the .sig tag pushed.
check "skopeo copy app:1 from docker-registry into a scratch layout" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$DIST/app:1" "oci:$WORK/scratch:1"
check "ir-sign signs the image (tag form) for $HOST/signed:1" \
  "$SIGN" sign --key "$WORK/keys/cosign.key" --layout "$WORK/scratch" --tag 1 --reference "$HOST/signed:1" --mode tag
check "skopeo copy the .sig tag into docker-registry" \
  "${SK[@]}" copy -q --preserve-digests --dest-tls-verify=false "oci:$WORK/scratch:$SIG_TAG" "docker://$DIST/app:$SIG_TAG"
check "docker-registry lists both tags" \
  bash -c "curl -fsS http://$DIST/v2/app/tags/list | jq -e --arg s $SIG_TAG '.tags | index(\"1\") != null and index(\$s) != null'"

# The served root, written by skopeo from docker-registry ------------------
SROOT=$WORK/root
mkdir -p "$SROOT"
check "skopeo copy app:1 into the root as signed:1" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$DIST/app:1" "oci:$SROOT/signed:1"
check "skopeo copy the .sig tag into the root beside it" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$DIST/app:$SIG_TAG" "oci:$SROOT/signed:$SIG_TAG"
check "skopeo copy app:1 into the root as unsigned:1" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$DIST/app:1" "oci:$SROOT/unsigned:1"
# The referrers form and the sigstore bundle, signed in the root directly.
for form in referrers bundle; do
  check "skopeo copy app:1 into the root as $form-signed:1" \
    "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$DIST/app:1" "oci:$SROOT/$form-signed:1"
  check "ir-sign signs $form-signed:1 ($form form)" \
    "$SIGN" sign --key "$WORK/keys/cosign.key" --layout "$SROOT/$form-signed" --tag 1 --reference "$HOST/$form-signed:1" --mode "$form"
done

policy() { # policy FILE KEY
  cat >"$1" <<JSON
{"default":[{"type":"reject"}],"transports":{"docker":{"$HOST":[{"type":"sigstoreSigned","keyPath":"$2"}]}}}
JSON
}
policy "$WORK/policy.json" "$WORK/keys/cosign.pub"
policy "$WORK/other-policy.json" "$WORK/other-keys/cosign.pub"

# --check ----------------------------------------------------------------
"$BIN" --check -r "$SROOT" --policy "$WORK/policy.json" --registry-host "$HOST" >"$WORK/check.txt" 2>&1
CHECK_RC=$?
cat "$WORK/check.txt" >>"$E2E_LOG"
check "--check exits 1 (a tag is refused)" test "$CHECK_RC" -eq 1
for app in signed referrers-signed; do
  check "--check accepts $app:1" grep -Eq "^accepted +$app:1 signed by sha256:" "$WORK/check.txt"
done
check "--check refuses bundle-signed:1 (wrong_identity: the bundle names no image)" \
  grep -Eq "^refused +bundle-signed:1: .*wrong_identity: .*names no docker reference" "$WORK/check.txt"
check "--check refuses unsigned:1 (no_signature)" grep -Eq "^refused +unsigned:1: .*no_signature" "$WORK/check.txt"
"$BIN" --check -r "$SROOT" --policy "$WORK/policy.json" --registry-host "$HOST" --format json >"$WORK/check.json" 2>>"$E2E_LOG"
check "--check JSON: the tags carry signature verdicts, accepted and refused" \
  bash -c "jq -e '[.. | objects | select(has(\"signature\")) | .signature.verdict] | (index(\"accepted\") != null) and (index(\"refused\") != null)' $WORK/check.json"

# Served and pulled --------------------------------------------------------
start_server "$WORK/server.log" -r "$SROOT" -p "$PORT" --bind 127.0.0.1 --policy "$WORK/policy.json" --registry-host "$HOST" -t no-tls
wait_http "http://$HOST/v2/" || { cat "$WORK/server.log"; exit 1; }
PULLED=$WORK/pulled
check "skopeo copy signed:1 from ir-server" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$HOST/signed:1" "oci:$PULLED:1"
check "skopeo copy its .sig tag from ir-server" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$HOST/signed:$SIG_TAG" "oci:$PULLED:$SIG_TAG"
check "the pulled image has the signed digest" \
  bash -c "[ \"\$(jq -r '.manifests[] | select(.annotations[\"org.opencontainers.image.ref.name\"]==\"1\") | .digest' $PULLED/index.json)\" = $DIGEST ]"
check "ir-sign verifies the pulled image (tag form)" \
  "$SIGN" verify --key "$WORK/keys/cosign.pub" --layout "$PULLED" --tag 1 --reference "$HOST/signed:1" --mode tag
check "ir-sign refuses it for another reference" \
  bash -c "! $SIGN verify --key $WORK/keys/cosign.pub --layout $PULLED --tag 1 --reference $HOST/unsigned:1"
check "ir-sign refuses it with another key" \
  bash -c "! $SIGN verify --key $WORK/other-keys/cosign.pub --layout $PULLED --tag 1 --reference $HOST/signed:1"
check "skopeo inspect of unsigned:1 fails (manifest unknown)" \
  bash -c "out=\$(${SK[*]} inspect --tls-verify=false docker://$HOST/unsigned:1 2>&1); rc=\$?; echo \"\$out\"; [ \$rc -ne 0 ] && grep -Eiq 'manifest unknown|not found|404' <<<\"\$out\""
check "unsigned:1 answers 404 MANIFEST_UNKNOWN" \
  bash -c "[ \"\$(curl -s -o $WORK/unsigned.json -w '%{http_code}' http://$HOST/v2/unsigned/manifests/1)\" = 404 ] && jq -e '.errors[0].code == \"MANIFEST_UNKNOWN\"' $WORK/unsigned.json"
check "unsigned is not in the catalog's tags" \
  bash -c "! curl -fsS http://$HOST/v2/unsigned/tags/list | jq -e '(.tags // []) | index(\"1\") != null'"

check "bundle-signed:1 answers 404, and lists no referrer" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://$HOST/v2/bundle-signed/manifests/1)\" = 404 ] && ! curl -fsS http://$HOST/v2/bundle-signed/referrers/$DIGEST | jq -e '.manifests[0]'"
for form in referrers; do
  app=$form-signed
  out=$WORK/pulled-$form
  check "skopeo copy $app:1 from ir-server" \
    "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$HOST/$app:1" "oci:$out:1"
  REFERRER=$(curl -fsS "http://$HOST/v2/$app/referrers/$DIGEST" | jq -r '.manifests[0].digest // empty')
  check "the referrers API lists the $form signature" test -n "$REFERRER"
  check "skopeo copy the $form signature by digest from ir-server" \
    "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$HOST/$app@$REFERRER" "oci:$out:signature"
  check "ir-sign verifies the pulled $app:1 ($form form)" \
    "$SIGN" verify --key "$WORK/keys/cosign.pub" --layout "$out" --tag 1 --reference "$HOST/$app:1" --mode "$form"
done

# ir-client judges pulls by the same policy file --------------------------
CLIENT=${IR_CLIENT_BIN:-$ROOT/target/debug/ir-client}
for app in signed referrers-signed; do
  check "ir-client pull --policy accepts $app:1 (signed by the trusted key)" \
    bash -c "$CLIENT pull -q --policy $WORK/policy.json --registry-host $HOST -o $WORK/client-$app http://$HOST/$app:1 | grep -q 'signed by sha256:'"
done
"$CLIENT" pull -q --policy "$WORK/other-policy.json" --registry-host "$HOST" -o "$WORK/client-refused" "http://$HOST/signed:1" \
  >"$WORK/client-refused.txt" 2>&1
CLIENT_RC=$?
cat "$WORK/client-refused.txt" >>"$E2E_LOG"
check "ir-client pull --policy with another key exits 6" test "$CLIENT_RC" -eq 6
check "ir-client names the image and the reason" grep -q "$HOST/signed:1: refused by the signature policy: .*untrusted_key" "$WORK/client-refused.txt"
check "ir-client wrote nothing for the refused image" test ! -e "$WORK/client-refused/index.json"

# A policy with another key refuses all ------------------------------------
"$BIN" --check -r "$SROOT" --policy "$WORK/other-policy.json" --registry-host "$HOST" >"$WORK/other-check.txt" 2>&1
OTHER_RC=$?
cat "$WORK/other-check.txt" >>"$E2E_LOG"
check "--check with another key exits 1" test "$OTHER_RC" -eq 1
check "--check with another key accepts nothing" bash -c "! grep -Eq '^accepted ' $WORK/other-check.txt"
for app in signed referrers-signed bundle-signed; do
  check "--check with another key refuses $app:1 (untrusted_key)" grep -Eq "^refused +$app:1: .*untrusted_key" "$WORK/other-check.txt"
done
OTHER_PORT=$(free_port)
start_server "$WORK/other-server.log" -r "$SROOT" -p "$OTHER_PORT" --bind 127.0.0.1 --policy "$WORK/other-policy.json" --registry-host "$HOST" -t no-tls
wait_http "http://127.0.0.1:$OTHER_PORT/v2/" || { cat "$WORK/other-server.log"; exit 1; }
for app in signed referrers-signed bundle-signed; do
  check "with another key, $app:1 answers 404" \
    bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$OTHER_PORT/v2/$app/manifests/1)\" = 404 ]"
done

# A restart remembers what it verified (--signature-cache) ---------------
STATE=$WORK/state
mkdir -m 700 "$STATE"
CACHE_PORT=$(free_port)
for run in first restart; do
  when=$([ "$run" = first ] && echo "first start" || echo "restart")
  start_server "$WORK/cache-$run.log" -r "$SROOT" -p "$CACHE_PORT" --bind 127.0.0.1 --policy "$WORK/policy.json" \
    --registry-host "$HOST" --signature-cache "$STATE/signatures" -t no-tls
  wait_http "http://127.0.0.1:$CACHE_PORT/v2/" || { cat "$WORK/cache-$run.log"; exit 1; }
  check "$when with --signature-cache: skopeo copy signed:1" \
    "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://127.0.0.1:$CACHE_PORT/signed:1" "oci:$WORK/cache-$run:1"
  check "$when with --signature-cache: the pulled image has the signed digest" \
    bash -c "[ \"\$(jq -r '.manifests[0].digest' $WORK/cache-$run/index.json)\" = $DIGEST ]"
  check "$when with --signature-cache: unsigned:1 answers 404" \
    bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$CACHE_PORT/v2/unsigned/manifests/1)\" = 404 ]"
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null
done
check "the first start wrote the signature cache, readable by its owner only" \
  bash -c "grep -q 'signature artifact(s) written' $WORK/cache-first.log && [ \"\$(stat -c %a $STATE/signatures)\" = 600 ]"
check "the restart remembered the three signature artifacts and wrote nothing" \
  bash -c "grep -q '3 signature artifact(s) remembered' $WORK/cache-restart.log && ! grep -q 'artifact(s) written' $WORK/cache-restart.log"

# Keyless: a Fulcio certificate and a Rekor entry -------------------------
KEYLESS=${IR_KEYLESS_BIN:-$ROOT/target/debug/keyless-sign}
KROOT=$WORK/keyless-root
mkdir -p "$KROOT"
check "skopeo copy app:1 into a keyless root as keyless-signed:1" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$DIST/app:1" "oci:$KROOT/keyless-signed:1"
check "keyless-sign signs keyless-signed:1 (test Fulcio CA and Rekor key)" \
  "$KEYLESS" "$KROOT/keyless-signed" 1 "$HOST/keyless-signed:1" "$WORK/keyless" ci@example.com https://token.example
check "skopeo copy app:1 into the keyless root as keyless-bundle:1" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://$DIST/app:1" "oci:$KROOT/keyless-bundle:1"
check "keyless-sign signs keyless-bundle:1 as a sigstore bundle (the same CA and Rekor key)" \
  "$KEYLESS" "$KROOT/keyless-bundle" 1 "$HOST/keyless-bundle:1" "$WORK/keyless-b" ci@example.com https://token.example bundle
cat "$WORK/keyless-b/fulcio.pem" >>"$WORK/keyless/fulcio.pem"
cat "$WORK/keyless-b/rekor.pub" >"$WORK/keyless/rekor-b.pub"
keyless_policy() { # keyless_policy FILE EMAIL
  cat >"$1" <<JSON
{"default":[{"type":"reject"}],"transports":{"docker":{"$HOST":[{"type":"sigstoreSigned",
 "fulcio":{"caPath":"$WORK/keyless/fulcio.pem","oidcIssuer":"https://token.example","subjectEmail":"$2"},
 "rekorPublicKeyPaths":["$WORK/keyless/rekor.pub","$WORK/keyless/rekor-b.pub"]}]}}}
JSON
}
keyless_policy "$WORK/keyless-policy.json" ci@example.com
keyless_policy "$WORK/keyless-other-policy.json" mallory@example.com
"$BIN" --check -r "$KROOT" --policy "$WORK/keyless-policy.json" --registry-host "$HOST" >"$WORK/keyless-check.txt" 2>&1
cat "$WORK/keyless-check.txt" >>"$E2E_LOG"
check "--check accepts keyless-signed:1, signed by its e-mail and issuer" \
  grep -Eq "^accepted +keyless-signed:1 signed by ci@example.com \(https://token.example\)" "$WORK/keyless-check.txt"
check "--check accepts keyless-bundle:1 (sigstore bundle), signed by its e-mail and issuer" \
  grep -Eq "^accepted +keyless-bundle:1 signed by ci@example.com \(https://token.example\)" "$WORK/keyless-check.txt"
KPORT=$(free_port)
start_server "$WORK/keyless-server.log" -r "$KROOT" -p "$KPORT" --bind 127.0.0.1 --policy "$WORK/keyless-policy.json" --registry-host "$HOST" -t no-tls
wait_http "http://127.0.0.1:$KPORT/v2/" || { cat "$WORK/keyless-server.log"; exit 1; }
KSIG=$(jq -r '.manifests[] | .annotations["org.opencontainers.image.ref.name"] // empty' "$KROOT/keyless-signed/index.json" | grep '\.sig$')
check "skopeo copy keyless-signed:1 from ir-server" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://127.0.0.1:$KPORT/keyless-signed:1" "oci:$WORK/keyless-pulled:1"
check "skopeo copy its keyless .sig tag from ir-server" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://127.0.0.1:$KPORT/keyless-signed:$KSIG" "oci:$WORK/keyless-pulled:$KSIG"
check "the pulled .sig layer carries the Fulcio certificate and the Rekor SET" \
  bash -c "m=\$(jq -r --arg t $KSIG '.manifests[] | select(.annotations[\"org.opencontainers.image.ref.name\"]==\$t) | .digest' $WORK/keyless-pulled/index.json); jq -e '.layers[0].annotations | has(\"dev.sigstore.cosign/certificate\") and has(\"dev.sigstore.cosign/bundle\")' $WORK/keyless-pulled/blobs/sha256/\${m#sha256:}"
check "the pulled keyless image has the signed digest" \
  bash -c "[ \"\$(jq -r '.manifests[] | select(.annotations[\"org.opencontainers.image.ref.name\"]==\"1\") | .digest' $WORK/keyless-pulled/index.json)\" = $DIGEST ]"
check "ir-sign (sigstore-rs) verifies the pulled keyless image: SET, chain, signature" \
  "$SIGN" verify-keyless --fulcio "$WORK/keyless/fulcio.pem" --rekor-key "$WORK/keyless/rekor.pub" --layout "$WORK/keyless-pulled" --tag 1 --reference "$HOST/keyless-signed:1"
check "ir-sign refuses it with another Rekor key" \
  bash -c "! $SIGN verify-keyless --fulcio $WORK/keyless/fulcio.pem --rekor-key $WORK/keys/cosign.pub --layout $WORK/keyless-pulled --tag 1 --reference $HOST/keyless-signed:1"
check "ir-client pull --policy accepts keyless-signed:1 (signed by its e-mail)" \
  bash -c "$CLIENT pull -q --policy $WORK/keyless-policy.json --registry-host $HOST -o $WORK/client-keyless http://127.0.0.1:$KPORT/keyless-signed:1 | grep -q 'signed by ci@example.com'"
check "skopeo copy keyless-bundle:1 from ir-server" \
  "${SK[@]}" copy -q --preserve-digests --src-tls-verify=false "docker://127.0.0.1:$KPORT/keyless-bundle:1" "oci:$WORK/keyless-bundle-pulled:1"
KREF=$(curl -fsS "http://127.0.0.1:$KPORT/v2/keyless-bundle/referrers/$DIGEST" | jq -r '.manifests[0].digest // empty')
check "the referrers API lists the keyless bundle, and skopeo copies it by digest" \
  bash -c "[ -n '$KREF' ] && ${SK[*]} copy -q --preserve-digests --src-tls-verify=false docker://127.0.0.1:$KPORT/keyless-bundle@$KREF oci:$WORK/keyless-bundle-pulled:bundle"
"$BIN" --check -r "$KROOT" --policy "$WORK/keyless-other-policy.json" --registry-host "$HOST" >"$WORK/keyless-other-check.txt" 2>&1
KOTHER_RC=$?
cat "$WORK/keyless-other-check.txt" >>"$E2E_LOG"
check "--check with another e-mail exits 1 and refuses keyless-signed:1 (untrusted_key)" \
  bash -c "[ $KOTHER_RC -eq 1 ] && grep -Eq '^refused +keyless-signed:1: .*untrusted_key.*ci@example.com' $WORK/keyless-other-check.txt"
KOTHER_PORT=$(free_port)
start_server "$WORK/keyless-other-server.log" -r "$KROOT" -p "$KOTHER_PORT" --bind 127.0.0.1 --policy "$WORK/keyless-other-policy.json" --registry-host "$HOST" -t no-tls
wait_http "http://127.0.0.1:$KOTHER_PORT/v2/" || { cat "$WORK/keyless-other-server.log"; exit 1; }
check "with another e-mail, keyless-bundle:1 answers 404" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$KOTHER_PORT/v2/keyless-bundle/manifests/1)\" = 404 ]"
check "with another e-mail, keyless-signed:1 answers 404" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$KOTHER_PORT/v2/keyless-signed/manifests/1)\" = 404 ]"
check "with another e-mail, skopeo cannot pull keyless-signed:1" \
  bash -c "! ${SK[*]} copy -q --src-tls-verify=false docker://127.0.0.1:$KOTHER_PORT/keyless-signed:1 oci:$WORK/keyless-refused:1"
check "with another e-mail, keyless-signed is not in tags/list" \
  bash -c "! curl -fsS http://127.0.0.1:$KOTHER_PORT/v2/keyless-signed/tags/list | jq -e '(.tags // []) | index(\"1\") != null'"

summary "e2e signatures"
