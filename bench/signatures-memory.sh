#!/usr/bin/env bash
# What judging costs when many images share one large signature blob
# (issue 30): N small images, each with a sigstore bundle referrer listing
# the same ~1 MiB bundle 32 times (1 MiB on disk whatever N is), checked
# with `ir-server --check` under a policy that requires a signature. Peak
# RSS and time per N; both must grow with N at most as the images do, and
# the RSS must stay bounded.
#
#   bench/signatures-memory.sh             # builds (release), generates, measures
#   BIN=target/debug/ir-server bench/signatures-memory.sh   # another binary
#
# Environment (all optional): COUNTS="10 40 160", LAYERS=32, BENCH_TMP=/var/tmp,
# KEEP=1. Prints a Markdown table.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

: "${COUNTS:=10 40 160}" "${LAYERS:=32}" "${BENCH_TMP:=/var/tmp}"
HOST=bench.local
if [[ -z ${BIN:-} ]]; then
    log "building (release)"
    (cd "$repo" && cargo build --release -q -p ir-server --bin ir-server)
    BIN=$repo/target/release/ir-server
fi

work=$(mktemp -d "$BENCH_TMP/ir-sigmem.XXXXXX")
cleanup() { [[ ${KEEP:-} == 1 ]] && log "kept $work" || rm -rf "$work"; }
trap cleanup EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$work/k.pem" 2>/dev/null
openssl ec -in "$work/k.pem" -pubout -out "$work/k.pub" 2>/dev/null
cat >"$work/policy.json" <<JSON
{"default": [{"type": "reject"}],
 "transports": {"docker": {"$HOST": [{"type": "sigstoreSigned", "keyPath": "$work/k.pub"}]}}}
JSON

echo "| images | bundle layers per image | on disk | peak RSS | time | refused |"
echo "|---:|---:|---:|---:|---:|---:|"
for n in $COUNTS; do
    rm -rf "$work/root"
    python3 "$here/gen_signatures_memory.py" "$work/root" --images "$n" --layers "$LAYERS" >/dev/null
    disk=$(du -sh "$work/root" | cut -f1)
    wait_quiet "n=$n"
    /usr/bin/time -v "$BIN" --check -r "$work/root" --registry-host "$HOST" \
        --policy "$work/policy.json" >"$work/out" 2>"$work/err" || true
    rss=$(awk -F: '/Maximum resident set size/ {print $2 + 0}' "$work/err")
    wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$work/err")
    refused=$(grep -c '^refused' "$work/out" || true)
    printf '| %d | %d | %s | %d MiB | %s | %d |\n' "$n" "$LAYERS" "$disk" $((rss / 1024)) "$wall" "$refused"
done
[[ ${#UNDER_LOAD[@]} -eq 0 ]] || echo "Measured under load: ${UNDER_LOAD[*]}"
