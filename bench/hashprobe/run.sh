#!/usr/bin/env bash
# Runs hashprobe over a registry root (default: a fresh one from
# bench/gen_registry.py) in the configurations of docs/benchmarks.md, each
# on a quiet machine with the files just re-read into the page cache,
# 3 repetitions each.
#
#   bench/hashprobe/run.sh [ROOT]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/bench/lib.sh"

cargo build --release --quiet --manifest-path "$here/Cargo.toml" --target-dir "$repo/target"
probe=$repo/target/release/hashprobe
root=${1:-}
if [[ -z $root ]]; then
    work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/ir-hashprobe.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    root=$work/root
    python3 "$repo/bench/gen_registry.py" generate "$root" >/dev/null
fi
for cfg in "1 256 sha2 mem" "1 256 awslc mem" "2 256 sha2 mem" "2 256 awslc mem" \
    "2 64 sha2 read" "2 256 sha2 read" "2 1024 sha2 read" "2 4096 sha2 read" \
    "2 256 awslc read" "2 1024 awslc read" "1 1024 sha2 read" "1 256 sha2 read" \
    "2 1024 sha2 mmap" "2 1024 awslc mmap"; do
    wait_quiet "hashprobe $cfg"
    find "$root" -type f -exec cat {} + >/dev/null
    for _ in 1 2 3; do
        # shellcheck disable=SC2086 # cfg is four words on purpose
        /usr/bin/time -f "CPU %P" "$probe" "$root" $cfg 2>&1 | paste -sd ' ' - | sed "s/\$/ quiet=$QUIET/"
    done
done
