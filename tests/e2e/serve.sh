#!/usr/bin/env bash
# Real container runtimes pulling over RA-TLS through `ir-client serve`, as
# docs/client.md configures them: an emulated realm's endpoint on loopback
# forwards to ir-server -t ra-tls, and skopeo, podman (pull and run, the
# endpoint as a registry and as a mirror of the server's name), containerd's
# ctr (pull and run through hosts.toml) and docker (pull and run from
# localhost:PORT) pull the example image through it. Each pulled image is
# checked: its digest is the server's, and running it prints hello's
# greeting.
#
# containerd and dockerd are started here with private roots, state and
# sockets; a runtime whose daemon cannot start in this sandbox is skipped
# with a SKIP line that says so.
#
# Usage: tests/e2e/serve.sh   (needs: skopeo podman runc containerd dockerd
#        docker jq curl openssl; builds nothing)
# Env:   IR_SERVER_BIN, IR_CLIENT_BIN (default target/debug/…)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLIENT=${IR_CLIENT_BIN:-$ROOT/target/debug/ir-client}
. "$ROOT/tests/e2e/lib.sh"

CERTS=$WORK/certs
"$ROOT/scripts/make-dev-cert.sh" "$CERTS" >>"$E2E_LOG"

# The realm, and what the server needs to trust it (hello and team/*).
"$CLIENT" emulated-realm --realm-keys "$WORK/realm" --name demo-realm \
  --application hello --application 'team/*' \
  --trust-anchors-out "$WORK/ta.json" --reference-values-out "$WORK/realm.json" >>"$E2E_LOG" 2>&1

PORT=$(free_port)
start_server "$WORK/server.log" -t ra-tls -c "$CERTS/server.crt" -k "$CERTS/server.key" \
  --cpak "$WORK/ta.json" -j "$WORK/realm.json" -r "$REG" -p "$PORT" --bind 127.0.0.1
for _ in $(seq 1 100); do grep -q "ready" "$WORK/server.log" && break; sleep 0.1; done
UPSTREAM=localhost:$PORT

# The realm's endpoint.
LPORT=$(free_port)
EP=localhost:$LPORT
"$CLIENT" serve "ra-tls://$UPSTREAM" --listen "127.0.0.1:$LPORT" --ca "$CERTS/ca.crt" \
  --emulate-realm --realm-keys "$WORK/realm" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
wait_http "http://$EP/v2/" || { cat "$WORK/serve.log"; exit 1; }

# What the server serves: hello's index, and this host's image in it.
HELLO=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="latest") | .digest' "$REG/hello/index.json" | head -1)
ARCH=$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')
HELLO_HERE=$(jq -r --arg a "$ARCH" '.manifests[] | select(.platform.architecture==$a) | .digest' "$REG/hello/blobs/sha256/${HELLO#sha256:}")
GREETING='Hello from the ir-server example registry!'

check "the endpoint's /healthz says an attested upstream connection can be had" \
  curl -fsS "http://$EP/healthz"
check "a plain client is refused by the server itself (RA-TLS only)" \
  bash -c "! curl -fsS --cacert $CERTS/ca.crt https://$UPSTREAM/v2/"

# skopeo -------------------------------------------------------------------
check "skopeo inspect through the endpoint reports the server's digest" \
  bash -c "[ \"\$(skopeo inspect --tls-verify=false docker://$EP/hello:latest | jq -r .Digest)\" = $HELLO ]"
check "skopeo copy --all through the endpoint" \
  skopeo copy --all --src-tls-verify=false "docker://$EP/hello:latest" "oci:$WORK/sk-hello:latest"
check "skopeo copied the server's index digest" \
  bash -c "[ \"\$(jq -r .manifests[0].digest $WORK/sk-hello/index.json)\" = $HELLO ]"
check "skopeo received byte-identical blobs" \
  bash -c "cd $WORK/sk-hello/blobs && for f in */*; do cmp -s \$f $REG/hello/blobs/\$f || exit 1; done"

# podman: the endpoint as a registry, then as a mirror of the server's name -
PM=(podman --root "$WORK/podman" --runroot "$WORK/podman-run" --storage-driver vfs)
RUN=(run --rm --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none --cgroup-manager cgroupfs)
cat >"$WORK/registries.conf" <<TOML
unqualified-search-registries = []

# The endpoint itself (plain HTTP on loopback).
[[registry]]
location = "$EP"
insecure = true

# The server's name, pulled through the endpoint.
[[registry]]
prefix = "$UPSTREAM"
location = "$UPSTREAM"
[[registry.mirror]]
location = "127.0.0.1:$LPORT"
insecure = true
TOML
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
check "podman pull through the endpoint (registries.conf [[registry]])" \
  "${PM[@]}" pull "$EP/hello:latest"
check "podman pulled the server's digest" \
  bash -c "${PM[*]} image inspect $EP/hello:latest --format '{{.Digest}}' | grep -qx $HELLO"
check "podman run prints the greeting" \
  bash -c "${PM[*]} ${RUN[*]} $EP/hello:latest | grep -qx '$GREETING'"
check "podman pull of the server's name through the endpoint as its mirror" \
  "${PM[@]}" pull "$UPSTREAM/team/tools:latest"
TOOLS=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="latest") | .digest' "$REG/team/tools/index.json" | head -1)
check "podman pulled the server's digest for the server's name" \
  bash -c "${PM[*]} image inspect $UPSTREAM/team/tools:latest --format '{{.Digest}}' | grep -qx $TOOLS"
check "podman runs it by the server's name" \
  bash -c "${PM[*]} ${RUN[*]} $UPSTREAM/team/tools:latest | grep -qx '$GREETING'"
check "the mirror pull went through the endpoint" \
  grep -q "team/tools" "$WORK/serve.log"
unset CONTAINERS_REGISTRIES_CONF
check "podman --registries-conf: run by the server's name through the mirror" \
  bash -c "${PM[*]} --registries-conf $WORK/registries.conf ${RUN[*]} $UPSTREAM/hello:latest | grep -qx '$GREETING'"

# containerd: hosts.toml sends the server's name to the endpoint ----------
CT=$WORK/containerd
mkdir -p "$CT/hosts/$UPSTREAM"
cat >"$CT/config.toml" <<TOML
version = 2
root = "$CT/root"
state = "$CT/state"
[grpc]
  address = "$CT/containerd.sock"
TOML
cat >"$CT/hosts/$UPSTREAM/hosts.toml" <<TOML
server = "https://$UPSTREAM"
[host."http://127.0.0.1:$LPORT"]
  capabilities = ["pull", "resolve"]
TOML
containerd --config "$CT/config.toml" >"$CT/log" 2>&1 &
PIDS+=($!)
CTR=(ctr --address "$CT/containerd.sock")
for _ in $(seq 1 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
if "${CTR[@]}" version >/dev/null 2>&1; then
  check "ctr pull of the server's name through hosts.toml" \
    "${CTR[@]}" images pull --hosts-dir "$CT/hosts" "$UPSTREAM/hello:latest"
  check "ctr pulled the server's digest" \
    bash -c "${CTR[*]} images ls | grep '^$UPSTREAM/hello:latest ' | grep -q $HELLO"
  check "ctr run prints the greeting" \
    bash -c "${CTR[*]} run --rm $UPSTREAM/hello:latest hello-e2e | grep -qx '$GREETING'"
else
  echo "SKIP containerd: the daemon did not start in this sandbox (see $CT/log)"
fi

# docker: localhost:PORT (plain HTTP on loopback is allowed) ---------------
DK=$WORK/docker
mkdir -p "$DK"
# dockerd starts its own containerd; all its state stays under $DK.
dockerd --host "unix://$DK/docker.sock" --data-root "$DK/data" --exec-root "$DK/exec" \
  --pidfile "$DK/docker.pid" --bridge=none --iptables=false --ip6tables=false \
  --storage-driver vfs >"$DK/log" 2>&1 &
PIDS+=($!)
DOCKER=(docker -H "unix://$DK/docker.sock")
for _ in $(seq 1 300); do "${DOCKER[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
if "${DOCKER[@]}" version >/dev/null 2>&1; then
  check "docker pull from localhost:PORT" "${DOCKER[@]}" pull "$EP/hello:latest"
  check "docker pulled the server's digest" \
    bash -c "${DOCKER[*]} image inspect $EP/hello:latest --format '{{index .RepoDigests 0}}' | grep -qx '$EP/hello@$HELLO'"
  check "docker run prints the greeting" \
    bash -c "${DOCKER[*]} run --rm --network none $EP/hello:latest | grep -qx '$GREETING'"
else
  echo "SKIP docker: dockerd did not start in this sandbox (see $DK/log)"
fi

check "the endpoint served this host's image manifest ($ARCH)" \
  grep -q "${HELLO_HERE#sha256:}" "$WORK/serve.log"
check "the server logged the layers the runtimes pulled" \
  grep -q "/v2/hello/blobs/" "$WORK/server.log"

# dockerd's containers and mounts go before the work directory does.
"${DOCKER[@]}" rm -f $("${DOCKER[@]}" ps -aq 2>/dev/null) >/dev/null 2>&1
summary "serve"
