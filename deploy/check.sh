#!/usr/bin/env bash
# Static checks of the deployment files (no Docker engine or cluster needed):
# the systemd unit with systemd-analyze, the Kubernetes manifests with a
# YAML parser and consistency checks (probes, ports, read-only registry,
# grace periods), and the Dockerfile for the conventions it must keep.
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
else
  echo "skip systemd-analyze (not installed)"
fi
check "systemd unit: Type=notify, no capabilities, read-only registry" \
  bash -c "f=$ROOT/deploy/ir-server.service; grep -qx 'Type=notify' \$f && grep -qx 'CapabilityBoundingSet=' \$f \
           && grep -qx 'ProtectSystem=strict' \$f && grep -qx 'NoNewPrivileges=yes' \$f && grep -qx 'PrivateTmp=yes' \$f \
           && grep -qx 'ReadOnlyPaths=/srv/registry' \$f"

check "Kubernetes manifests parse and agree with each other" python3 - "$ROOT/deploy/k8s" <<'PY'
import glob, os, sys, yaml
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
assert env["IR_SERVER_ROOT"] == mounts["registry"]["mountPath"]
assert env["IR_SERVER_METRICS_ADDR"].endswith(":%d" % ports["metrics"])
grace = int(env["IR_SERVER_SHUTDOWN_GRACE"]) + c["lifecycle"]["preStop"]["sleep"]["seconds"]
assert pod["terminationGracePeriodSeconds"] > grace
sc = c["securityContext"]
assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
assert pod["securityContext"]["runAsNonRoot"]
assert pdb["spec"]["minAvailable"] < spec["replicas"]
PY

check "Dockerfile: multi-stage, non-root, ports, read-only registry path" \
  bash -c "f=$ROOT/deploy/Dockerfile; [ \$(grep -c '^FROM ' \$f) -ge 2 ] && grep -q '^USER 65532' \$f \
           && grep -q '^EXPOSE 1337 9090' \$f && grep -q 'IR_SERVER_ROOT=/registry' \$f \
           && grep -q 'cargo build --release --locked -p ir-server' \$f && ! grep -q 'ADD ' \$f"
check "Dockerfile: HEALTHCHECK runs the binary's own probe on the metrics listener" \
  bash -c "f=$ROOT/deploy/Dockerfile; grep -A1 '^HEALTHCHECK' \$f | grep -q '\"/usr/local/bin/ir-server\", \"probe\"' \
           && grep -q 'IR_SERVER_METRICS_ADDR=127.0.0.1:9090' \$f && '$BIN' probe --help | grep -q IR_SERVER_METRICS_ADDR"
check "the Dockerfile's build context keeps what the build needs" \
  bash -c "! grep -Eq '^(crates|Cargo.toml|Cargo.lock|scripts)\$' $ROOT/deploy/Dockerfile.dockerignore"
check "the image's environment names real options" \
  bash -c "for v in \$(grep -o 'IR_SERVER_[A-Z_]*' $ROOT/deploy/Dockerfile $ROOT/deploy/ir-server.service $ROOT/deploy/k8s/*.yaml | cut -d: -f2 | sort -u); do
             '$BIN' --help | grep -q \"env: \$v\" || { echo \"unknown \$v\"; exit 1; }; done"

summary deploy
