#!/usr/bin/env bash
# What the signature policy adds to a cold `ir-server --check` (issue 22):
# the 10,000 applications x 10 tags registry of bench/compare.sh with every
# tag signed the way `cosign sign` stores it (a `sha256-<hex>.sig` tag,
# P-256), checked with no policy and with a policy that requires the
# signature, and that policy with a `--signature-cache` written by an
# earlier run (a restart). All runs read the same root (signatures
# included), so the differences are the verification.
#
#   bench/signatures.sh          # builds, generates, measures
#
# Environment (all optional):
#   APPS=10000 TAGS=10 RUNS=3    registry shape, runs per variant
#   BENCH_TMP=/var/tmp           where the registry is written (a disk)
#   KEEP=1                       keep the generated registry
#   QUIET_LOAD, QUIET_POLL, QUIET_MAX_WAIT   see bench/lib.sh
#
# Cold: `echo 3 > /proc/sys/vm/drop_caches` before each run when writable,
# else every file evicted with posix_fadvise. Prints a Markdown report.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

: "${APPS:=10000}" "${TAGS:=10}" "${RUNS:=3}" "${BENCH_TMP:=/var/tmp}"
HOST=bench.local

log "building (release)"
(cd "$repo" && cargo build --release -q -p ir-server -p ir-testkit --bin ir-server --bin cosign-sign-root)
bin=$repo/target/release/ir-server

work=$(mktemp -d "$BENCH_TMP/ir-signatures.XXXXXX")
cleanup() { [[ ${KEEP:-} == 1 ]] && log "kept $work" || rm -rf "$work"; }
trap cleanup EXIT
log "generating $APPS x $TAGS and signing every tag"
python3 "$here/gen_compare.py" many "$work/root" --apps "$APPS" --tags "$TAGS" >/dev/null
signed=$("$repo/target/release/cosign-sign-root" "$work/root" "$HOST" "$work/cosign.pub")
files=$(find "$work/root" -type f | wc -l)
cat >"$work/policy.json" <<EOF
{"default": [{"type": "reject"}],
 "transports": {"docker": {"$HOST": [{"type": "sigstoreSigned", "keyPath": "$work/cosign.pub"}]}}}
EOF

if (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    cold_method="sync; echo 3 > /proc/sys/vm/drop_caches"
    make_cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
else
    cold_method="posix_fadvise(DONTNEED) of every file"
    make_cold() { python3 "$here/gen_compare.py" evict "$work/root"; }
fi

# run ARGS...: seconds of one cold --check (which must accept every tag).
run() {
    make_cold
    local start end
    start=$(date +%s.%N)
    "$bin" --check -r "$work/root" --registry-host "$HOST" "$@" >"$work/out" 2>"$work/err" || {
        tail -3 "$work/out" "$work/err" >&2
        return 1
    }
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f\n", b - a }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

state=$work/state
mkdir -m 700 "$state"
cache=(--policy "$work/policy.json" --signature-cache "$state/signatures.json")
log "writing the signature cache (one run, not measured)"
run "${cache[@]}" >/dev/null
plain=() policy=() cached=()
for i in $(seq 1 "$RUNS"); do
    # Alternate the variants so that drift on a shared host hits all.
    wait_quiet "run $i without policy"
    plain+=("$(run)")
    wait_quiet "run $i with policy"
    policy+=("$(run --policy "$work/policy.json")")
    wait_quiet "run $i with policy and cache"
    cached+=("$(run "${cache[@]}")")
    grep -q "signature artifact(s) remembered" "$work/err" || { echo "the cache was not read" >&2; exit 1; }
    log "run $i: ${plain[-1]} s without, ${policy[-1]} s with the policy, ${cached[-1]} s with its cache"
done
grep -q "signature policy: $signed tag(s) accepted, 0 refused" "$work/err" ||
    { echo "the policy did not accept every tag" >&2; exit 1; }
p=$(printf '%s\n' "${plain[@]}" | median)
q=$(printf '%s\n' "${policy[@]}" | median)
c=$(printf '%s\n' "${cached[@]}" | median)
cpu=$(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }')

cat <<EOF
### Signature policy: cold \`--check\` of $APPS x $TAGS, every tag signed

$(date -u +%Y-%m-%d), $(git -C "$repo" describe --always --dirty), $(nproc) cores ($cpu), $cold_method before each run, $RUNS runs each (median).
Root: $APPS applications, $signed tags each with a cosign signature (P-256, \`sha256-<hex>.sig\` tag), $files files.

| variant | runs (s) | median |
|---|---|---|
| no \`--policy\` | ${plain[*]} | **$p s** |
| \`--policy\` (sigstoreSigned, one key) | ${policy[*]} | **$q s** |
| added by verification | | **$(awk -v a="$p" -v b="$q" 'BEGIN { printf "%+.2f s (%+.0f %%)", b - a, 100 * (b - a) / a }')** |
| \`--policy\` and \`--signature-cache\` (a restart) | ${cached[*]} | **$c s** |
| added by the policy on a restart | | **$(awk -v a="$p" -v b="$c" 'BEGIN { printf "%+.2f s (%+.1f %%)", b - a, 100 * (b - a) / a }')** |
EOF
if ((${#UNDER_LOAD[@]})); then
    echo
    echo "Measured while the machine was busy: ${UNDER_LOAD[*]}."
fi
