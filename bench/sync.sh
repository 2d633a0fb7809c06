#!/usr/bin/env bash
# `ir-client sync` against `skopeo sync`: 20 repositories in docker-registry
# (distribution 2.8, plain HTTP on 127.0.0.1), 19 with one unique 1 MiB
# layer and one with a 256 MiB layer, copied
#
#   - by `skopeo sync --src yaml --dest dir` (a directory per image, no OCI
#     layout, nothing verified beyond the digests of what it copies);
#   - by `ir-client sync --file` into a fresh root (every blob verified,
#     each repository staged, checked by ir-server's loader and swapped in);
#   - by `ir-client sync` again with nothing changed.
#
# ROUNDS rounds, alternating, each into fresh directories; prints the
# median of each and the ratio. Each measurement waits for a quiet machine
# (bench/lib.sh).
#
# Usage: bench/sync.sh            (a release ir-client is built if missing)
# Env:   ROUNDS=3 BIG_MIB=256 REPOS=20 IR_CLIENT_BIN
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
: "${ROUNDS:=3}" "${BIG_MIB:=256}" "${REPOS:=20}"
now() { date +%s.%N; }
CLIENT=${IR_CLIENT_BIN:-$root/target/release/ir-client}
[[ -x $CLIENT ]] || (cd "$root" && cargo build --release -p ir-client)
for tool in docker-registry skopeo python3 bc; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done

work=$(mktemp -d)
registry_pid=
cleanup() { [[ -n $registry_pid ]] && kill "$registry_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The images: OCI layouts with random layers (uncompressed tar media type;
# nothing here unpacks them).
python3 - "$work/src" "$REPOS" "$BIG_MIB" <<'PY'
import hashlib, json, os, sys
out, repos, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def put(d, data):
    h = hashlib.sha256(data).hexdigest()
    os.makedirs(f"{d}/blobs/sha256", exist_ok=True)
    with open(f"{d}/blobs/sha256/{h}", "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{h}", "size": len(data)}
for i in range(repos):
    d = f"{out}/r{i:02}"
    mib = big if i == 0 else 1
    layer = put(d, os.urandom(mib << 20))
    config = put(d, json.dumps({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}]}).encode()
    m = put(d, manifest)
    with open(f"{d}/oci-layout", "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(f"{d}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            **m, "annotations": {"org.opencontainers.image.ref.name": "1"}}]}, f)
PY

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '%s\n' 'version: 0.1' 'log:' '  level: error' 'storage:' '  filesystem:' \
  "    rootdirectory: $work/store" 'http:' "  addr: 127.0.0.1:$port" >"$work/registry.yml"
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 200); do curl -fs -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
log "pushing $REPOS images to docker-registry"
for d in "$work"/src/r*; do
  skopeo copy -q --dest-tls-verify=false "oci:$d:1" "docker://127.0.0.1:$port/bench/$(basename "$d"):1"
done
rm -rf "$work/src"

{
  echo "127.0.0.1:$port:"
  echo "  tls-verify: false"
  echo "  images:"
  for i in $(seq 0 $((REPOS - 1))); do printf '    bench/r%02d: []\n' "$i"; done
} >"$work/skopeo.yaml"
sed -e "s#^127.0.0.1:$port:#http://127.0.0.1:$port:#" -e '/tls-verify/d' "$work/skopeo.yaml" >"$work/ir.yaml"

sk=() ir=() again=()
for i in $(seq 1 "$ROUNDS"); do
  rm -rf "$work/sk" "$work/ir"
  mkdir -p "$work/sk"
  wait_quiet "round $i skopeo sync"
  t0=$(now)
  skopeo sync --src yaml --dest dir "$work/skopeo.yaml" "$work/sk" >/dev/null 2>&1
  t1=$(now)
  wait_quiet "round $i ir-client sync"
  t2=$(now)
  "$CLIENT" sync -q --root "$work/ir" --file "$work/ir.yaml" >/dev/null
  t3=$(now)
  "$CLIENT" sync -q --root "$work/ir" --file "$work/ir.yaml" --format json >"$work/again.json"
  t4=$(now)
  grep -q '"bytesDownloaded": 0' "$work/again.json" || { echo "the second sync downloaded something" >&2; exit 1; }
  sk+=("$(echo "$t1 - $t0" | bc)") ir+=("$(echo "$t3 - $t2" | bc)") again+=("$(echo "$t4 - $t3" | bc)")
  log "round $i: skopeo sync ${sk[-1]} s, ir-client sync ${ir[-1]} s, again ${again[-1]} s"
done
ms=$(median "${sk[@]}") mi=$(median "${ir[@]}") ma=$(median "${again[@]}")
echo "median of $ROUNDS: skopeo sync (dir) $ms s, ir-client sync $mi s (ratio skopeo/ir-client $(echo "scale=2; $ms / $mi" | bc)), nothing changed $ma s"
if ((${#UNDER_LOAD[@]})); then printf 'under load: %s\n' "${UNDER_LOAD[@]}"; fi
