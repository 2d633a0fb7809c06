#!/usr/bin/env bash
# Static checks of the deployment files (no Docker engine or cluster needed):
# the systemd unit with systemd-analyze, the Kubernetes manifests with a
# YAML parser and consistency checks (probes, ports, read-only registry,
# grace periods), the Dockerfile for the conventions it must keep, and
# the seccomp profile, with the binary run under it in a container when
# podman and runc are installed.
#
# Usage: deploy/check.sh   (needs: python3 with PyYAML; systemd-analyze optional)
# Env:   IR_SERVER_BIN  binary standing in for /usr/local/bin/ir-server
#                       (default target/debug/ir-server)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/tests/e2e/lib.sh"

if command -v systemd-analyze >/dev/null; then
  # verify wants the executable to exist: point it at the built binary.
  sed "s#/usr/local/bin/ir-server#$BIN#" "$ROOT/deploy/ir-server.service" >"$WORK/ir-server.service"
  check "systemd unit passes systemd-analyze verify" systemd-analyze verify "$WORK/ir-server.service"
  check "systemd unit sandboxing scores OK or better" \
    bash -c "systemd-analyze security --offline=yes --threshold=20 '$WORK/ir-server.service' | tail -1 | grep -Eq 'OK|SAFE'"
  CLIENT_BIN=${IR_CLIENT_BIN:-$ROOT/target/debug/ir-client}
  sed "s#/usr/local/bin/ir-client#$CLIENT_BIN#" "$ROOT/deploy/systemd/ir-client-serve.service" >"$WORK/ir-client-serve.service"
  check "ir-client serve's unit passes systemd-analyze verify" systemd-analyze verify "$WORK/ir-client-serve.service"
  check "ir-client serve's unit sandboxing scores OK or better" \
    bash -c "systemd-analyze security --offline=yes --threshold=30 '$WORK/ir-client-serve.service' | tail -1 | grep -Eq 'OK|SAFE'"
else
  echo "skip systemd-analyze (not installed)"
fi
check "systemd unit: Type=notify, no capabilities, read-only registry" \
  bash -c "f=$ROOT/deploy/ir-server.service; grep -qx 'Type=notify' \$f && grep -qx 'CapabilityBoundingSet=' \$f \
           && grep -qx 'ProtectSystem=strict' \$f && grep -qx 'NoNewPrivileges=yes' \$f && grep -qx 'PrivateTmp=yes' \$f \
           && grep -qx 'ReadOnlyPaths=/srv/registry' \$f"
check "ir-client serve's unit starts before the container runtimes, on loopback" \
  bash -c "f=$ROOT/deploy/systemd/ir-client-serve.service; grep -qx 'Before=containerd.service crio.service podman.service docker.service' \$f \
           && grep -q -- '--listen 127.0.0.1:5000' \$f && grep -qx 'CapabilityBoundingSet=' \$f"

check "Kubernetes manifests parse and agree with each other" python3 - "$ROOT/deploy/k8s" <<'PY'
import glob, os, sys, tomllib, yaml
d = sys.argv[1]
kinds = {}
for f in sorted(glob.glob(os.path.join(d, "*.yaml"))):
    for doc in yaml.safe_load_all(open(f)):
        assert doc and "apiVersion" in doc and "kind" in doc, f
        kinds.setdefault(doc["kind"], doc)
k = kinds["Kustomization"]
assert sorted(k["resources"]) == sorted(os.path.basename(f) for f in glob.glob(os.path.join(d, "*.yaml")) if not f.endswith("kustomization.yaml"))
dep, svc, pdb = kinds["Deployment"], kinds["Service"], kinds["PodDisruptionBudget"]
spec = dep["spec"]; labels = spec["template"]["metadata"]["labels"]; pod = spec["template"]["spec"]
c = pod["containers"][0]
assert spec["replicas"] == 3
for sel in (spec["selector"]["matchLabels"], svc["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"]):
    assert sel.items() <= labels.items(), sel
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["readinessProbe"]["httpGet"]["port"] in ports
assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["livenessProbe"]["httpGet"]["port"] in ports
assert {p["targetPort"] for p in svc["spec"]["ports"]} <= set(ports)
mounts = {m["name"]: m for m in c["volumeMounts"]}
vols = {v["name"]: v for v in pod["volumes"]}
assert mounts["registry"]["readOnly"] is True
assert vols["registry"]["persistentVolumeClaim"]["readOnly"] is True
assert vols["registry"]["persistentVolumeClaim"]["claimName"] == kinds["PersistentVolumeClaim"]["metadata"]["name"]
env = {e["name"]: e["value"] for e in c["env"]}
conf = tomllib.load(open(os.path.join(d, k["configMapGenerator"][0]["files"][0]), "rb"))
assert env["IR_SERVER_CONFIG"] == os.path.join(mounts["config"]["mountPath"], "ir-server.toml")
assert vols["config"]["configMap"]["name"] == k["configMapGenerator"][0]["name"]
assert conf["registry"]["root"] == mounts["registry"]["mountPath"]
assert env["IR_SERVER_METRICS_ADDR"].endswith(":%d" % ports["metrics"])
grace = conf["listener"]["shutdown-grace"] + c["lifecycle"]["preStop"]["sleep"]["seconds"]
assert pod["terminationGracePeriodSeconds"] > grace
sc = c["securityContext"]
assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
assert pod["securityContext"]["runAsNonRoot"]
assert pdb["spec"]["minAvailable"] < spec["replicas"]
# The image is a parameter of the kustomization, named once.
images = {i["name"]: i for i in k["images"]}
assert c["image"] in images and ":" not in c["image"], c["image"]
# The io_uring component swaps RuntimeDefault for the shipped profile.
comp = yaml.safe_load(open(os.path.join(d, "components/io-uring/kustomization.yaml")))
assert comp["kind"] == "Component"
patch = yaml.safe_load(comp["patches"][0]["patch"])
prof = patch["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]
assert prof == {"type": "Localhost", "localhostProfile": "profiles/ir-server.json"}, prof
# The signature-cache component: an emptyDir handed to the server's user,
# mode 0700 (the cache's rule), mounted where the cache file lives.
comp = yaml.safe_load(open(os.path.join(d, "components/signature-cache/kustomization.yaml")))
assert comp["kind"] == "Component"
tpl = yaml.safe_load(comp["patches"][0]["patch"])["spec"]["template"]["spec"]
init, srv = tpl["initContainers"][0], tpl["containers"][0]
assert srv["name"] == c["name"]
uid = pod["securityContext"]["runAsUser"]
cmd = " ".join(init["command"])
assert f"chown {uid}:{uid} /var/lib/ir-server" in cmd and "chmod 0700 /var/lib/ir-server" in cmd, cmd
cache = {e["name"]: e["value"] for e in srv["env"]}["IR_SERVER_SIGNATURE_CACHE"]
mount = {m["name"]: m["mountPath"] for m in srv["volumeMounts"]}
assert os.path.dirname(cache) == mount["state"] == init["volumeMounts"][0]["mountPath"]
assert "emptyDir" in tpl["volumes"][0] and tpl["volumes"][0]["name"] == "state"
assert init["securityContext"]["capabilities"]["drop"] == ["ALL"]
PY

# ir-client sync for replicas: the systemd service and timer, and the
# Kubernetes component (init container and sidecar with an emptyDir).
CLIENT=${IR_CLIENT_BIN:-$ROOT/target/debug/ir-client}
if command -v systemd-analyze >/dev/null; then
  sed "s#/usr/local/bin/ir-client#$CLIENT#" "$ROOT/deploy/ir-client-sync.service" >"$WORK/ir-client-sync.service"
  cp "$ROOT/deploy/ir-client-sync.timer" "$WORK/"
  check "ir-client-sync service and timer pass systemd-analyze verify" \
    bash -c "cd $WORK && ! systemd-analyze verify ir-client-sync.service ir-client-sync.timer 2>&1 | grep -v 'ir-registry' | grep ."
fi
check "ir-client-sync.service: writes only the root, its command's flags exist" \
  bash -c "f=$ROOT/deploy/ir-client-sync.service; grep -qx 'ProtectSystem=strict' \$f && grep -qx 'ReadWritePaths=/srv/registry' \$f \
           && grep -q '^OnUnitInactiveSec=' $ROOT/deploy/ir-client-sync.timer \
           && for flag in \$(grep '^ExecStart=' \$f | grep -o -- '--[a-z-]*'); do '$CLIENT' sync --help | grep -q -- \"\$flag\" || { echo \"unknown \$flag\"; exit 1; }; done"
if command -v kubectl >/dev/null; then
  mkdir -p "$WORK/k8s-overlay"
  # kustomize takes relative paths only.
  K8S=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$ROOT/deploy/k8s" "$WORK/k8s-overlay")
  printf '%s\n' 'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' \
    "resources: [$K8S]" "components: [$K8S/components/sync]" \
    >"$WORK/k8s-overlay/kustomization.yaml"
  kubectl kustomize --load-restrictor LoadRestrictionsNone "$WORK/k8s-overlay" >"$WORK/k8s-sync.yaml" 2>>"$E2E_LOG"
  check "the sync component: emptyDir root, sync init container and sidecar, server --watch" \
    python3 - "$WORK/k8s-sync.yaml" "$CLIENT" <<'PY'
import subprocess, sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1]))}
pod = docs["Deployment"]["spec"]["template"]["spec"]
vols = {v["name"]: v for v in pod["volumes"]}
assert vols["registry"] == {"name": "registry", "emptyDir": {}}, vols["registry"]
init = {c["name"]: c for c in pod["initContainers"]}
fill, side = init["registry-fill"], init["registry-sync"]
assert "restartPolicy" not in fill and side["restartPolicy"] == "Always"
assert "--interval" in side["args"] and "--interval" not in fill["args"]
server = pod["containers"][0]
assert {"name": "IR_SERVER_WATCH", "value": "true"} in server["env"]
assert server["image"] == fill["image"] == side["image"]
helptext = subprocess.run([sys.argv[2], "sync", "--help"], capture_output=True, text=True).stdout
for c in (fill, side):
    assert c["command"] == ["/usr/local/bin/ir-client"] and c["args"][0] == "sync"
    for a in c["args"]:
        if a.startswith("-"):
            assert a in helptext, a
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert not mounts["registry"].get("readOnly") and mounts["sync-config"]["readOnly"]
    assert c["securityContext"]["readOnlyRootFilesystem"]
assert {m["name"]: m for m in server["volumeMounts"]}["registry"]["readOnly"] is True
PY
else
  echo "skip building the sync component (kubectl not installed)"
fi

check "Dockerfile: multi-stage, non-root, ports, read-only registry path" \
  bash -c "f=$ROOT/deploy/Dockerfile; [ \$(grep -c '^FROM ' \$f) -ge 2 ] && grep -q '^USER 65532' \$f \
           && grep -q '^EXPOSE 1337 9090' \$f && grep -qx 'root = \"/registry\"' $ROOT/deploy/container.toml \
           && grep -q 'COPY deploy/container.toml /etc/ir-server/ir-server.toml' \$f && grep -q 'IR_SERVER_CONFIG=/etc/ir-server/ir-server.toml' \$f \
           && grep -q 'cargo build --release --locked -p ir-server' \$f && ! grep -q 'ADD ' \$f"
check "Dockerfile: the image ships a stripped binary, its debug info in the stage debug-info" \
  bash -c "f=$ROOT/deploy/Dockerfile; grep -q 'objcopy --only-keep-debug' \$f && grep -q -- '--add-gnu-debuglink' \$f \
           && grep -q '^FROM scratch AS debug-info' \$f && [ \"\$(grep '^FROM ' \$f | tail -1)\" = 'FROM \${RUNTIME_IMAGE}' ] \
           && ! grep -q 'COPY --from=build /out/ir-server.debug /usr' \$f"
check "the Dockerfile's strip step keeps a working binary, smaller, that points at its debug info" \
  bash -c "objcopy --only-keep-debug '$BIN' $WORK/ir-server.debug \
           && objcopy --strip-debug --strip-unneeded --add-gnu-debuglink=$WORK/ir-server.debug '$BIN' $WORK/ir-server-stripped \
           && $WORK/ir-server-stripped --version && [ \$(stat -c %s $WORK/ir-server-stripped) -lt \$(( \$(stat -c %s '$BIN') / 2 )) ] \
           && readelf --string-dump=.gnu_debuglink $WORK/ir-server-stripped | grep -q ir-server.debug"
check "seccomp profile: errno by default, io_uring allowed, no mount, ptrace, namespaces or reboot" python3 - "$ROOT/deploy/seccomp/ir-server.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["defaultAction"] == "SCMP_ACT_ERRNO"
allowed = {n for s in d["syscalls"] if s["action"] == "SCMP_ACT_ALLOW" and not s.get("args") and not s.get("includes") for n in s["names"]}
assert {"io_uring_setup", "io_uring_enter", "io_uring_register"} <= allowed
for risky in ("bpf", "kexec_load", "init_module", "ptrace", "mount", "umount2", "reboot", "setns", "unshare", "chroot"):
    assert risky not in allowed, risky  # ir-server needs none of these
PY
if command -v podman >/dev/null && command -v runc >/dev/null; then
  # A minimal root file system holding the binary and its libraries.
  RFS=$WORK/rootfs
  mkdir -p "$RFS/bin" "$RFS/registry"
  cp "$BIN" "$RFS/bin/ir-server"
  for l in $(ldd "$BIN" | grep -o '/[^ ]*'); do mkdir -p "$RFS$(dirname "$l")"; cp -L "$l" "$RFS$l"; done
  cp -a "$ROOT/registry/." "$RFS/registry/"
  PODMAN=(podman run --rm --runtime runc --cgroup-manager cgroupfs --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
  check "under the shipped seccomp profile the loader gets io_uring (no fallback warning)" \
    bash -c "out=\$(${PODMAN[*]} --network none --security-opt seccomp=$ROOT/deploy/seccomp/ir-server.json --rootfs $RFS /bin/ir-server --check -r /registry 2>&1) \
             && grep -q '3 applications served' <<<\"\$out\" && ! grep -q 'io_uring unavailable' <<<\"\$out\""
  check "under the container runtime's default profile io_uring is refused and the load still verifies" \
    bash -c "out=\$(${PODMAN[*]} --network none --rootfs $RFS /bin/ir-server --check -r /registry 2>&1) \
             && grep -q '3 applications served' <<<\"\$out\" && grep -q 'io_uring unavailable' <<<\"\$out\""
  # The image's state directory for --signature-cache: owned by the
  # server's user, 0700. As that user the cache is used; in a directory
  # others may write (an emptyDir's mode) it is refused.
  mkdir -p "$RFS/etc/ir" "$RFS/var/lib/ir-server" "$RFS/var/lib/world"
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$RFS/etc/ir/policy.json"
  chmod 755 "$RFS" "$RFS/etc" "$RFS/etc/ir" "$RFS/var" "$RFS/var/lib"
  chown 65532:65532 "$RFS/var/lib/ir-server" && chmod 0700 "$RFS/var/lib/ir-server"
  chmod 0777 "$RFS/var/lib/world"
  check "the signature cache in the image's state directory is used by the server's user" \
    bash -c "out=\$(${PODMAN[*]} --network none --user 65532:65532 --rootfs $RFS /bin/ir-server --check -r /registry \
               --policy /etc/ir/policy.json --signature-cache /var/lib/ir-server/signatures 2>&1) \
             && grep -q 'signature cache /var/lib/ir-server/signatures' <<<\"\$out\" && ! grep -q 'signature cache not' <<<\"\$out\""
  check "a signature cache in a world-writable directory (an emptyDir) is not used" \
    bash -c "out=\$(${PODMAN[*]} --network none --user 65532:65532 --rootfs $RFS /bin/ir-server --check -r /registry \
               --policy /etc/ir/policy.json --signature-cache /var/lib/world/signatures 2>&1); \
             grep -q 'signature cache not used' <<<\"\$out\" && grep -q '3 applications served' <<<\"\$out\""
  SPORT=$(free_port)
  "${PODMAN[@]}" --network host --name "ir-seccomp-$SPORT" --security-opt seccomp="$ROOT/deploy/seccomp/ir-server.json" \
    --rootfs "$RFS" /bin/ir-server -r /registry --bind 127.0.0.1 -p "$SPORT" >"$WORK/seccomp.log" 2>&1 &
  check "the server serves under the shipped seccomp profile" \
    bash -c "for i in \$(seq 1 100); do curl -sf 127.0.0.1:$SPORT/v2/_catalog | grep -q hello && exit 0; sleep 0.1; done; exit 1"
  podman stop -t 5 "ir-seccomp-$SPORT" >/dev/null 2>&1
  wait
else
  echo "skip running under the seccomp profile (podman or runc not installed)"
fi
check "Dockerfile: a state directory for the signature cache, owned by the server's user, 0700" \
  bash -c "f=$ROOT/deploy/Dockerfile; grep -q 'install -d -m 0700 /out/state' \$f \
           && grep -q 'COPY --from=build --chown=65532:65532 /out/state /var/lib/ir-server' \$f"
check "Dockerfile: HEALTHCHECK runs the binary's own probe on the metrics listener" \
  bash -c "f=$ROOT/deploy/Dockerfile; grep -A1 '^HEALTHCHECK' \$f | grep -q '\"/usr/local/bin/ir-server\", \"probe\"' \
           && grep -q 'IR_SERVER_METRICS_ADDR=127.0.0.1:9090' \$f && '$BIN' probe --help | grep -q IR_SERVER_METRICS_ADDR"
check "the Dockerfile's build context keeps what the build needs" \
  bash -c "! grep -Eq '^(crates|Cargo.toml|Cargo.lock|scripts)\$' $ROOT/deploy/Dockerfile.dockerignore"
for conf in deploy/ir-server.toml deploy/container.toml deploy/k8s/ir-server.toml; do
  check "$conf is a configuration the binary reads" \
    bash -c "env -u IR_SERVER_CONFIG '$BIN' --config '$ROOT/$conf' --print-config >/dev/null"
done
check "the systemd unit reads its configuration file" \
  grep -qx 'ExecStart=/usr/local/bin/ir-server --config /etc/ir-server/ir-server.toml' "$ROOT/deploy/ir-server.service"
check "the image's environment names real options" \
  bash -c "for v in \$(grep -o 'IR_SERVER_[A-Z_]*' $ROOT/deploy/Dockerfile $ROOT/deploy/ir-server.service $ROOT/deploy/k8s/*.yaml $ROOT/deploy/k8s/components/*/*.yaml | cut -d: -f2 | sort -u); do
             '$BIN' --help | grep -q \"env: \$v\" || { echo \"unknown \$v\"; exit 1; }; done"

summary deploy
