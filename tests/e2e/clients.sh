#!/usr/bin/env bash
# Pulls from ir-server with real OCI clients (skopeo, podman, containerd's
# ctr) over plain HTTP on 127.0.0.1, for a two-platform image (hello), a
# single-arch image (team/tools), a multi-arch index with a non-runnable
# platform and an artifact with a subject, and compares what they received
# with the source layouts.
#
# Usage: tests/e2e/clients.sh   (needs: skopeo podman containerd jq curl)
# Env:   IR_SERVER_BIN  server binary (default target/debug/ir-server)
#        IR_CLIENT_BIN  client binary (default target/debug/ir-client)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/e2e/lib.sh"

PORT=$(free_port)
start_server "$WORK/server.log" -r "$REG" -p "$PORT" --bind 127.0.0.1
wait_http "http://127.0.0.1:$PORT/v2/" || { cat "$WORK/server.log"; exit 1; }
HOST=127.0.0.1:$PORT

# The source digests, read from the layouts.
src_digest() { jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) | .digest' "$REG/$1/index.json" | head -1; }
HELLO=$(src_digest hello latest)
# hello is an index of linux/amd64 and linux/arm64; clients on this host take amd64.
HELLO_AMD64=$(jq -r '.manifests[] | select(.platform.architecture=="amd64") | .digest' "$REG/hello/blobs/sha256/${HELLO#sha256:}")
TOOLS=$(src_digest team/tools latest)
MULTI=$(src_digest multi latest)
ARTIFACT=$(jq -r '.manifests[] | select(.artifactType != null) | .digest' "$REG/multi/index.json" | head -1)
SUBJECT=$(curl -fsS "http://$HOST/v2/multi/manifests/$ARTIFACT" | jq -r .subject.digest)

# skopeo -----------------------------------------------------------------
SK=(skopeo --override-os linux --override-arch amd64)
check "skopeo inspect reports the source digest" \
  bash -c "[ \"\$(${SK[*]} inspect --tls-verify=false docker://$HOST/hello:latest | jq -r .Digest)\" = $HELLO ]"
check "skopeo copy --all the two-platform hello" \
  "${SK[@]}" copy --all --src-tls-verify=false "docker://$HOST/hello:latest" "oci:$WORK/sk-hello:latest"
check "skopeo copy --all keeps hello's index digest" \
  bash -c "[ \"\$(jq -r .manifests[0].digest $WORK/sk-hello/index.json)\" = $HELLO ]"
check "skopeo copy received byte-identical blobs" \
  bash -c "cd $WORK/sk-hello/blobs && for f in */*; do cmp -s \$f $REG/hello/blobs/\$f || exit 1; done"
check "skopeo copy single-arch image" \
  "${SK[@]}" copy --src-tls-verify=false "docker://$HOST/team/tools:latest" "oci:$WORK/sk-tools:latest"
check "skopeo copy keeps the manifest digest" \
  bash -c "[ \"\$(jq -r .manifests[0].digest $WORK/sk-tools/index.json)\" = $TOOLS ]"
check "skopeo copy --all multi-arch index" \
  "${SK[@]}" copy --all --src-tls-verify=false "docker://$HOST/multi:latest" "oci:$WORK/sk-multi:latest"
check "skopeo copy --all keeps the index digest" \
  bash -c "[ \"\$(jq -r .manifests[0].digest $WORK/sk-multi/index.json)\" = $MULTI ]"
check "skopeo copy artifact with a subject" \
  "${SK[@]}" copy --src-tls-verify=false "docker://$HOST/multi@$ARTIFACT" "oci:$WORK/sk-art:sbom"
check "skopeo copy keeps the artifact digest" \
  bash -c "[ \"\$(jq -r .manifests[0].digest $WORK/sk-art/index.json)\" = $ARTIFACT ]"
check "referrers API lists the artifact for its subject" \
  bash -c "curl -fsS http://$HOST/v2/multi/referrers/$SUBJECT | jq -e --arg d $ARTIFACT '.manifests | map(.digest) | index(\$d) != null'"

# ir-client writes layouts that skopeo, umoci and podman use ---------------
CLIENT=${IR_CLIENT_BIN:-$ROOT/target/debug/ir-client}
IRC=$WORK/irc-layout
check "ir-client pull hello into a layout" "$CLIENT" pull "http://$HOST/hello:latest" --out "$IRC" -q
check "ir-client pull multi, all platforms, into the same layout as tag multi" \
  "$CLIENT" pull "http://$HOST/multi:latest" --all-platforms --tag multi --out "$IRC" -q
irc_tag() { jq -r --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) | .digest' "$IRC/index.json"; }
check "ir-client's layout holds both tags, at the source digests (hello: its amd64 image)" \
  test "$(irc_tag latest) $(irc_tag multi)" = "$HELLO_AMD64 $MULTI"
check "skopeo copy oci: of ir-client's layout keeps the digest" \
  bash -c "skopeo copy -q oci:$IRC:latest oci:$WORK/irc-copy:latest && [ \"\$(skopeo inspect --raw oci:$WORK/irc-copy:latest | sha256sum | cut -d' ' -f1)\" = \"\$(skopeo inspect --raw oci:$IRC:latest | sha256sum | cut -d' ' -f1)\" ]"
check "umoci unpacks ir-client's layout" \
  bash -c "umoci unpack --rootless --image $IRC:latest $WORK/irc-bundle >/dev/null && [ -d $WORK/irc-bundle/rootfs ]"

# podman -----------------------------------------------------------------
PM=(podman --root "$WORK/podman" --runroot "$WORK/podman-run" --storage-driver vfs)
RUN=(run --rm --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none --cgroup-manager cgroupfs)
check "podman pull the two-platform hello (amd64)" "${PM[@]}" pull --tls-verify=false "$HOST/hello:latest"
check "podman pulled the source digest" \
  bash -c "${PM[*]} image inspect $HOST/hello:latest --format '{{.Digest}}' | grep -qx $HELLO"
check "podman run prints the greeting" \
  bash -c "${PM[*]} ${RUN[*]} $HOST/hello:latest | grep -q 'Hello from the ir-server example registry'"
check "podman pull multi-arch index (amd64)" "${PM[@]}" pull --tls-verify=false "$HOST/multi:latest"
check "podman run of the multi-arch image" \
  bash -c "${PM[*]} ${RUN[*]} $HOST/multi:latest | grep -q Hello"
# A relative path: podman names the image after it, and $WORK has capitals.
check "podman runs the image ir-client pulled (oci: layout)" \
  bash -c "cd $WORK && ${PM[*]} ${RUN[*]} oci:irc-layout:latest | grep -q Hello && ${PM[*]} ${RUN[*]} oci:irc-layout:multi | grep -q Hello"
# podman 4.3 fetches the artifact's manifest, then refuses on its own side
# to store a non-image; that client-side refusal is what we expect.
check "podman fetches the artifact and refuses it client-side" \
  bash -c "out=\$(${PM[*]} pull --tls-verify=false $HOST/multi@$ARTIFACT 2>&1); rc=\$?; echo \"\$out\"; [ \$rc -ne 0 ] && grep -q 'operation on artifact' <<<\"\$out\""

# Layers the server never opens: zstd and encrypted ---------------------
# Served as stored, byte for byte; only the client decompresses or decrypts.
ZSTD=$(src_digest team/tools zstd)
check "skopeo copy of the zstd image keeps its digest" \
  bash -c "${SK[*]} copy --preserve-digests --src-tls-verify=false docker://$HOST/team/tools:zstd oci:$WORK/sk-zstd:zstd \
           && [ \"\$(jq -r .manifests[0].digest $WORK/sk-zstd/index.json)\" = $ZSTD ]"
check "the zstd layers arrived as stored (tar+zstd, byte-identical)" \
  bash -c "m=$WORK/sk-zstd/blobs/sha256/${ZSTD#sha256:}; [ \"\$(jq -r '[.layers[].mediaType] | unique | .[]' \$m)\" = application/vnd.oci.image.layer.v1.tar+zstd ] \
           && for d in \$(jq -r '.layers[].digest | sub(\"sha256:\"; \"\")' \$m); do cmp -s $WORK/sk-zstd/blobs/sha256/\$d $REG/team/tools/blobs/sha256/\$d || exit 1; done"
check "podman runs the zstd image" \
  bash -c "${PM[*]} ${RUN[*]} --tls-verify=false $HOST/team/tools:zstd | grep -q 'Hello from the ir-server example registry'"

# An image encrypted with skopeo (ocicrypt JWE, a key pair made here),
# served from its own root, pulled encrypted and pulled decrypted.
ENC=$WORK/enc-root
mkdir -p "$ENC"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/enc.key" 2>/dev/null
openssl pkey -in "$WORK/enc.key" -pubout -out "$WORK/enc.pub"
check "skopeo encrypts the hello image into a root" \
  skopeo copy --encryption-key "jwe:$WORK/enc.pub" "oci:$REG/hello:latest" "oci:$ENC/hello-enc:latest"
ENC_PORT=$(free_port)
start_server "$WORK/enc-server.log" -r "$ENC" -p "$ENC_PORT" --bind 127.0.0.1
wait_http "http://127.0.0.1:$ENC_PORT/v2/" || { cat "$WORK/enc-server.log"; exit 1; }
ENC_HOST=127.0.0.1:$ENC_PORT
HELLO_LAYER=$(jq -r '.layers[0].digest' "$REG/hello/blobs/sha256/${HELLO_AMD64#sha256:}")
check "the server verified and serves the encrypted image" \
  bash -c "curl -fsS http://$ENC_HOST/v2/hello-enc/manifests/latest -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
           | jq -e '.layers[0].mediaType == \"application/vnd.oci.image.layer.v1.tar+gzip+encrypted\"'"
check "without the key, skopeo receives the layer still encrypted" \
  bash -c "${SK[*]} copy --preserve-digests --src-tls-verify=false docker://$ENC_HOST/hello-enc:latest oci:$WORK/enc-raw:latest \
           && [ ! -e $WORK/enc-raw/blobs/sha256/${HELLO_LAYER#sha256:} ]"
check "skopeo --decryption-key pulls and decrypts it to the original layer" \
  bash -c "${SK[*]} copy --src-tls-verify=false --decryption-key $WORK/enc.key docker://$ENC_HOST/hello-enc:latest oci:$WORK/enc-dec:latest \
           && cmp -s $WORK/enc-dec/blobs/sha256/${HELLO_LAYER#sha256:} $REG/hello/blobs/sha256/${HELLO_LAYER#sha256:}"
check "a wrong key cannot decrypt it" \
  bash -c "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $WORK/other.key 2>/dev/null; \
           ! ${SK[*]} copy --src-tls-verify=false --decryption-key $WORK/other.key docker://$ENC_HOST/hello-enc:latest oci:$WORK/enc-bad:latest"

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
CTR=(ctr --address "$CT/containerd.sock")
for _ in $(seq 1 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
check "ctr pull the two-platform hello (amd64)" "${CTR[@]}" images pull --plain-http "$HOST/hello:latest"
check "ctr pulled the source digest" \
  bash -c "${CTR[*]} images ls | grep $HOST/hello:latest | grep -q $HELLO"
check "ctr pull multi-arch index, all platforms" \
  "${CTR[@]}" images pull --plain-http --all-platforms "$HOST/multi:latest"
check "ctr pulled the index digest" \
  bash -c "${CTR[*]} images ls | grep $HOST/multi:latest | grep -q $MULTI"
check "ctr fetch artifact with a subject" "${CTR[@]}" content fetch --plain-http "$HOST/multi@$ARTIFACT"
check "ctr stored the artifact manifest" bash -c "${CTR[*]} content ls | grep -q ${ARTIFACT#sha256:}"

# Large blobs ------------------------------------------------------------
# A layer of several chunks: the first pull hashes it whole and seals it,
# the second and a range are checked chunk by chunk against the seal
# (crates/ir-server/src/seal.rs). Both pulls must be byte-identical
# (--preserve-digests: the layer is an uncompressed tar, which skopeo
# would otherwise compress on the way into an OCI layout).
python3 "$ROOT/bench/gen_compare.py" content "$WORK/big-root" --big-mib 8 --tags 1 --extra-apps 0 >"$WORK/big.json"
BIG_LAYER=$(jq -r .big "$WORK/big.json")
BIG_FILE=$WORK/big-root/team/app/blobs/sha256/${BIG_LAYER#sha256:}
BIG_PORT=$(free_port)
start_server "$WORK/big-server.log" -r "$WORK/big-root" -p "$BIG_PORT" --bind 127.0.0.1
wait_http "http://127.0.0.1:$BIG_PORT/v2/" || { cat "$WORK/big-server.log"; exit 1; }
for pull in 1 2; do
  check "skopeo copy of an 8 MiB layer, pull $pull of 2 (1: hashed and sealed; 2: checked per chunk)" \
    "${SK[@]}" copy --preserve-digests --src-tls-verify=false "docker://127.0.0.1:$BIG_PORT/team/app:t00" "oci:$WORK/sk-big-$pull:t00"
  check "pull $pull received the layer byte for byte" \
    cmp -s "$WORK/sk-big-$pull/blobs/sha256/${BIG_LAYER#sha256:}" "$BIG_FILE"
done
check "a range across chunks of the sealed layer is exact" \
  bash -c "curl -fsS -r 1000000-3000000 http://127.0.0.1:$BIG_PORT/v2/team/app/blobs/$BIG_LAYER | cmp -s - <(tail -c +1000001 $BIG_FILE | head -c 2000001)"

summary "e2e clients"
