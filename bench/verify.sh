#!/usr/bin/env bash
# Start-up verification benchmark (issue 2): how fast `ir-server --check`
# hashes a registry of at least 2 GiB, against what the machine's SHA-256
# can do: measured rate / (cores x single-core `openssl speed -evp sha256`).
# The goal is at least 0.9.
#
#   bench/verify.sh            # from anywhere; builds, generates, measures
#
# Environment (all optional):
#   APPS=8 IMAGE_MIB=256 LAYERS=4   registry shape (APPS x IMAGE_MIB MiB)
#   RUNS=5 COLD_RUNS=3 ONE_THREAD_RUNS=3
#   BENCH_TMP=/var/tmp              where the registry is written (use a
#                                   disk, not tmpfs, for the cold runs)
#   KEEP=1                          keep the generated registry
#   BENCH_REV                       what to call the source in the report
#                                   (default: git describe of this checkout)
#   QUIET_LOAD, QUIET_POLL, QUIET_MAX_WAIT   see bench/lib.sh
#
# Needs: cargo, python3 (3.9+), openssl, GNU time (/usr/bin/time), procps;
# run as root on Debian and the missing packages are installed with apt.
# Prints progress on stderr and a Markdown report on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

: "${APPS:=8}" "${IMAGE_MIB:=256}" "${LAYERS:=4}"
: "${RUNS:=5}" "${COLD_RUNS:=3}" "${ONE_THREAD_RUNS:=3}"
: "${BENCH_TMP:=/var/tmp}"

# ---- prerequisites --------------------------------------------------------
need=()
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
[[ -x /usr/bin/time ]] || need+=(time)
command -v pgrep >/dev/null || need+=(procps)
if ((${#need[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${need[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "missing: ${need[*]}" >&2
        exit 2
    fi
fi
command -v cargo >/dev/null || { echo "missing: cargo (install Rust)" >&2; exit 2; }

# ---- build ----------------------------------------------------------------
log "building: cargo build --release -p ir-server"
(cd "$repo" && cargo build --release -p ir-server --quiet)
bin=$repo/target/release/ir-server
rev=${BENCH_REV:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)}

# ---- registry ---------------------------------------------------------------
work=$(mktemp -d "$BENCH_TMP/ir-bench-verify.XXXXXX")
cleanup() { [[ ${KEEP:-} == 1 ]] && log "kept $work" || rm -rf "$work"; }
trap cleanup EXIT
root=$work/root
log "generating $APPS x $IMAGE_MIB MiB in $LAYERS layers each under $root"
gen_start=$SECONDS
bytes=$(python3 "$here/gen_registry.py" generate "$root" --apps "$APPS" --image-mib "$IMAGE_MIB" --layers "$LAYERS")
sync
log "generated $bytes bytes in $((SECONDS - gen_start))s"
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1048576 }')

# ---- single-core SHA-256 yardstick -----------------------------------------
wait_quiet "openssl speed"
openssl_quiet=$QUIET
openssl_mib=$(openssl_sha256_mib)
cores=$(nproc)
ideal=$((cores * openssl_mib))
log "openssl sha256 (16 KiB blocks, one core): $openssl_mib MiB/s; x $cores cores = $ideal MiB/s"
# On a VM the cores may not add up (shared physical cores, host load):
# what openssl itself does on all of them at once tells the two apart.
openssl_all_mib=$(openssl_sha256_mib "$cores")
log "openssl sha256 on $cores cores at once (-multi $cores): $openssl_all_mib MiB/s"

# ---- runs -------------------------------------------------------------------
# The page cache does not stay warm by itself on every machine: a VM whose
# host reclaims idle guest memory (DAMON `pageout` of pages unused for a
# minute, as on the machine of docs/benchmarks.md) evicts part of the
# registry while wait_quiet waits. So warm runs re-read the files just
# before they start, and every run reports how much was cached.
warm_cache() { find "$root" -type f -exec cat {} + >/dev/null; }
cached_mib() {
    if command -v fincore >/dev/null; then
        find "$root" -type f -exec fincore --bytes --raw --noheadings --output RES {} + |
            awk '{ s += $1 } END { printf "%.0f", s / 1048576 }'
    else
        echo "?"
    fi
}

rows=()
# run_check LABEL warm|cold [ARGS...]: one `--check` run under GNU time,
# on a quiet machine, after warming the page cache (warm) or not (cold);
# appends a table row and sets TOOL_RATE and WALL.
run_check() {
    local label=$1 cache=$2 out=$work/out err=$work/err tv=$work/time
    shift 2
    wait_quiet "$label"
    [[ $cache == warm ]] && warm_cache
    local cached rc=0
    cached=$(cached_mib)
    /usr/bin/time -v -o "$tv" "$bin" --check -r "$root" "$@" >"$out" 2>"$err" || rc=$?
    if ((rc != 0)); then
        echo "ir-server --check exited $rc:" >&2
        tail -5 "$out" "$err" >&2
        exit 1
    fi
    local summary secs
    summary=$(grep -E ' in [0-9.]+s \([0-9]+ MiB/s\)' "$out" | tail -1)
    secs=$(sed -E 's/.* in ([0-9.]+)s \(([0-9]+) MiB\/s\).*/\1/' <<<"$summary")
    TOOL_RATE=$(sed -E 's/.* in ([0-9.]+)s \(([0-9]+) MiB\/s\).*/\2/' <<<"$summary")
    WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0
        for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.2f", s }' "$tv")
    local rss cpu
    rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$tv")
    cpu=$(awk -F': ' '/Percent of CPU/ { print $2 }' "$tv")
    local wall_rate
    wall_rate=$(awk -v b="$mib" -v w="$WALL" 'BEGIN { printf "%.0f", b / w }')
    rows+=("| $label | $cached | $secs | $TOOL_RATE | $WALL | $wall_rate | $cpu | $rss | $QUIET |")
    log "$label: $cached MiB cached, load ${secs}s ($TOOL_RATE MiB/s), wall ${WALL}s, CPU $cpu, max RSS $rss MiB, quiet: $QUIET"
}

log "warm-up run (not counted)"
"$bin" --check -r "$root" >/dev/null 2>&1

warm_rates=() warm_walls=()
for i in $(seq 1 "$RUNS"); do
    run_check "warm $i" warm
    warm_rates+=("$TOOL_RATE")
    warm_walls+=("$WALL")
done

one_rates=()
for i in $(seq 1 "$ONE_THREAD_RUNS"); do
    run_check "warm, 1 thread $i" warm --verify-threads 1
    one_rates+=("$TOOL_RATE")
done

# Cold: drop the page cache if the kernel lets us, else evict the files.
cold_method=""
sync
if (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    cold_method="sync; echo 3 > /proc/sys/vm/drop_caches"
elif python3 "$here/gen_registry.py" evict "$root" >/dev/null 2>&1; then
    cold_method="posix_fadvise(DONTNEED) on every file (/proc/sys/vm/drop_caches is not writable here)"
fi
cold_rates=()
if [[ -n $cold_method ]]; then
    for i in $(seq 1 "$COLD_RUNS"); do
        if [[ $cold_method == sync* ]]; then
            sync
            echo 3 >/proc/sys/vm/drop_caches
        else
            python3 "$here/gen_registry.py" evict "$root" >/dev/null
        fi
        run_check "cold $i" cold
        cold_rates+=("$TOOL_RATE")
    done
fi

# ---- report -----------------------------------------------------------------
warm=$(median "${warm_rates[@]}")
wall=$(median "${warm_walls[@]}")
one=$(median "${one_rates[@]}")
cold=$(median "${cold_rates[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }

cat <<EOF
## Verification throughput (\`--check\`)

Source: $rev. Registry: $APPS applications x one image of $IMAGE_MIB MiB in $LAYERS layers = $bytes bytes ($mib MiB) of incompressible blobs.

Machine:
$(machine_info)

| measure | value |
| --- | --- |
| openssl speed -evp sha256, one core, 16384-byte blocks | $openssl_mib MiB/s (quiet: $openssl_quiet) |
| cores x single-core rate | $cores x $openssl_mib = $ideal MiB/s |
| --check, warm cache, median of $RUNS (tool's summary) | $warm MiB/s |
| --check, warm cache, median wall time | $wall s |
| **ratio: warm rate / (cores x single-core)** | **$(ratio "$warm" "$ideal")** (goal >= 0.9) |
| --check --verify-threads 1, median of $ONE_THREAD_RUNS | $one MiB/s = $(ratio "$one" "$openssl_mib") x openssl on one core |
| parallel scaling: warm rate / one-thread rate | $(ratio "$warm" "$one") (of $cores cores) |
| openssl speed -evp sha256 -multi $cores (all cores at once, summed) | $openssl_all_mib MiB/s = $(ratio "$openssl_all_mib" "$ideal") x the ideal; warm rate = $(ratio "$warm" "$openssl_all_mib") x this |
| --check, cold cache, median of ${#cold_rates[@]} | $cold MiB/s ($(ratio "$cold" "$ideal") of the ideal) |
| cold-cache method | ${cold_method:-not possible here} |

Every run (load = the tool's own \`in X.XXs (N MiB/s)\`; wall, CPU and max RSS from \`/usr/bin/time -v\`; wall MiB/s includes process start and exit):

| run | MiB cached before | load s | MiB/s | wall s | wall MiB/s | CPU | max RSS MiB | quiet |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${rows[@]}")
EOF
if ((${#UNDER_LOAD[@]})); then
    echo
    echo "WARNING: measured under load (the machine did not go quiet within ${QUIET_MAX_WAIT}s):"
    printf -- '- %s\n' "${UNDER_LOAD[@]}"
else
    echo
    echo "Every measurement ran on a quiet machine (no compiler running, 1-minute load below $QUIET_LOAD, CPUs at most $QUIET_BUSY% busy)."
fi
