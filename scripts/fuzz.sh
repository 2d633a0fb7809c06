#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (issue 7).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]       default 20 s per target
#   FUZZ_TARGETS="names range" scripts/fuzz.sh 60
#
# Longer, documented run (an hour per target, e.g. nightly):
#   scripts/fuzz.sh 3600
#
# Needs the nightly toolchain and cargo-fuzz (installed from crates.io if
# missing). Builds with `--sanitizer none` and debug assertions: the code
# under test is safe Rust apart from a few libc calls, so overflow checks
# and panics are what there is to find, at several times the speed of
# ASan. For a run with AddressSanitizer: FUZZ_SANITIZER=address.
#
# FUZZ_TARGET_DIR=/var/tmp/ir-fuzz-target keeps the (large) build between
# runs, e.g. across CI runs in fresh clones on the same machine; a cold
# build of the targets and their dependencies takes several minutes.
#
# New corpus entries go to fuzz/corpus/<target>/ (not committed); the
# committed seeds are fuzz/seeds/<target>/. A crash stops the script with
# exit 1 and leaves the input in fuzz/artifacts/<target>/; reproduce it
# with `cargo +nightly fuzz run <target> <file>` and keep it as a
# regression test in the crate it concerns.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${1:-20}"
SANITIZER="${FUZZ_SANITIZER:-none}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
DIR_ARGS=()
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
    DIR_ARGS=(--target-dir "$FUZZ_TARGET_DIR")
fi

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: the $TOOLCHAIN toolchain is required (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

targets="${FUZZ_TARGETS:-$(cargo "+$TOOLCHAIN" fuzz list)}"
echo "== building fuzz targets (sanitizer: $SANITIZER)"
cargo "+$TOOLCHAIN" fuzz build -s "$SANITIZER" --debug-assertions "${DIR_ARGS[@]}"

status=0
summary=""
for t in $targets; do
    mkdir -p "corpus/$t" "seeds/$t"
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
    log="$(mktemp)"
    if cargo "+$TOOLCHAIN" fuzz run -s "$SANITIZER" --debug-assertions "${DIR_ARGS[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
        cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')"
        summary+="$t: ok, $execs execs, cov $cov"$'\n'
    else
        status=1
        summary+="$t: FAILED (see fuzz/artifacts/$t/)"$'\n'
        tail -40 "$log"
    fi
    rm -f "$log"
done
echo "== fuzz summary (${SECONDS_PER_TARGET}s per target)"
printf '%s' "$summary"
exit "$status"
