# Shared by the benchmark scripts in bench/: source it, don't run it.
#
# Measurements are meaningless while something else keeps the cores busy
# (on a shared 2-core machine, another build). wait_quiet holds each
# measurement until the machine is idle, and records when it gave up.

# Tunables (environment):
: "${QUIET_LOAD:=0.5}"       # the 1-minute load average must be below this
: "${QUIET_BUSY:=10}"        # and the CPUs at most this % busy over 1 s
: "${QUIET_POLL:=10}"        # seconds between checks
: "${QUIET_MAX_WAIT:=1200}"  # give up (and say so) after this many seconds
: "${QUIET_STEAL:=5}"        # and the hypervisor took at most this % (steal)

# Labels of the measurements taken under load, for the final report.
UNDER_LOAD=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# cpu_busy_pct: how busy all CPUs were over the next second, in percent.
cpu_busy_pct() { cpu_busy_steal_pct | cut -d' ' -f1; }

# cpu_busy_steal_pct: "BUSY STEAL" over the next second, in percent of all
# CPUs' time. Steal is time the hypervisor gave this VM's CPUs to someone
# else: on a shared host it varies from minute to minute and slows every
# server alike, but not always the ones of one round alike, so the rounds
# and the report watch it too. Nothing inside the VM shows it otherwise.
cpu_busy_steal_pct() { stat_pct "$(head -1 /proc/stat)" "$(sleep 1; head -1 /proc/stat)"; }

# stat_pct BEFORE AFTER: "BUSY STEAL" in percent between two "cpu" lines of
# /proc/stat (user nice system idle iowait irq softirq steal ...).
stat_pct() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x); split(b, y); t = 0
        for (i = 2; i <= n; i++) t += y[i] - x[i]
        idle = (y[5] - x[5]) + (y[6] - x[6]); steal = y[9] - x[9]
        printf "%.0f %.1f\n", t ? 100 * (t - idle) / t : 0, t ? 100 * steal / t : 0 }'
}

# wait_quiet LABEL: waits until no compiler runs (`rustc`, `cc1`, and their
# kin `cc1plus`, `clippy-driver`, `rustdoc`), the 1-minute load average is
# below QUIET_LOAD, the CPUs were at most QUIET_BUSY percent busy over
# the last second and the hypervisor took at most QUIET_STEAL percent of
# them (steal; see cpu_busy_steal_pct). Sets QUIET to "yes", or to
# "no (...)" if it waited QUIET_MAX_WAIT seconds in vain (then it also
# appends to UNDER_LOAD and measures anyway).
wait_quiet() {
    local label=$1 start=$SECONDS busy load pct steal p
    while :; do
        busy=""
        for p in rustc cc1 cc1plus clippy-driver rustdoc; do
            if pgrep -x "$p" >/dev/null; then busy+="${busy:+ }$p"; fi
        done
        load=$(cut -d' ' -f1 /proc/loadavg)
        read -r pct steal < <(cpu_busy_steal_pct)
        if [[ -z $busy ]] && ((pct <= QUIET_BUSY)) &&
            awk -v l="$load" -v m="$QUIET_LOAD" -v s="$steal" -v ms="$QUIET_STEAL" 'BEGIN { exit !(l < m && s <= ms) }'; then
            QUIET="yes"
            log "$label: machine quiet (load $load, CPUs $pct% busy, steal $steal%) after $((SECONDS - start))s"
            return 0
        fi
        if ((SECONDS - start >= QUIET_MAX_WAIT)); then
            QUIET="no (load $load, CPUs $pct% busy, steal $steal%${busy:+, running: $busy})"
            UNDER_LOAD+=("$label: $QUIET")
            log "WARNING: $label measured UNDER LOAD: $QUIET after ${QUIET_MAX_WAIT}s of waiting"
            return 0
        fi
        sleep "$QUIET_POLL"
    done
}

# median N...: the median of numbers (the mean of the middle two for an
# even count).
# ports_free PORT...: exits when something already listens on one of the
# ports (a server left over from another run would answer in place of the
# one under test, and that one would fail to bind).
ports_free() {
    local port
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "port $port on 127.0.0.1 is already in use; stop what listens there or set PORT_BASE" >&2
            exit 1
        fi
    done
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# machine_info: one Markdown list describing this machine.
machine_info() {
    local model cores mem
    model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
    cores=$(nproc)
    mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    echo "- CPU: ${model:-unknown} ($(lscpu | sed -n 's/^Flags:.*\(sha_ni\).*/SHA-NI/p'))"
    echo "- cores (nproc): $cores"
    echo "- RAM: $mem"
    echo "- kernel: $(uname -sr)"
    echo "- OS: $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
    echo "- rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "- openssl: $(openssl version)"
}

# openssl_sha256_mib: single-core SHA-256 rate of `openssl speed -evp
# sha256 -seconds 3`, 16384-byte blocks, in MiB/s. openssl prints the
# column in thousands of bytes per second.
# With an argument N, the rate of N processes at once (`-multi N`), summed:
# what the machine's cores really do together.
openssl_sha256_mib() {
    local multi=()
    [[ -n ${1:-} ]] && multi=(-multi "$1")
    openssl speed -evp sha256 -seconds 3 "${multi[@]}" 2>/dev/null |
        awk 'tolower($1) == "sha256" && NF >= 7 { v = $7 } END {
            sub(/k$/, "", v); printf "%.0f\n", v * 1000 / 1048576 }'
}
