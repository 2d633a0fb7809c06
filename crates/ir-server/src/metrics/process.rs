//! The `process_*` metrics that Prometheus client libraries export by
//! convention (CPU seconds, memory, file descriptors, threads, start
//! time), read from `/proc/self` when scraped. prometheus-client has no
//! process collector, and a `/proc` crate would be a large dependency for
//! two small files, so they are parsed here. Outside Linux the metrics are
//! absent.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The process metrics, in a registry without the `ir_server` prefix.
#[derive(Debug)]
pub struct ProcessMetrics {
    registry: Registry,
    cpu: Counter<f64, AtomicU64>,
    cpu_seen: AtomicU64,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    threads: Gauge,
    start_time: Gauge,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What `/proc/self/stat` says (fields per proc(5)).
#[derive(Debug, Default, PartialEq)]
struct Stat {
    cpu_ticks: u64,
    threads: i64,
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: i64,
}

impl ProcessMetrics {
    /// The metrics, registered; values are read by [`ProcessMetrics::encode`].
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let cpu = Counter::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "process_cpu",
            "Total user and system CPU time spent",
            Unit::Seconds,
            cpu.clone(),
        );
        let resident = Gauge::default();
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            resident.clone(),
        );
        let virtual_memory = Gauge::default();
        registry.register_with_unit(
            "process_virtual_memory",
            "Virtual memory size",
            Unit::Bytes,
            virtual_memory.clone(),
        );
        let open_fds = Gauge::default();
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            open_fds.clone(),
        );
        let max_fds = Gauge::default();
        registry.register(
            "process_max_fds",
            "Maximum number of open file descriptors",
            max_fds.clone(),
        );
        let threads = Gauge::default();
        registry.register("process_threads", "OS threads", threads.clone());
        let start_time = Gauge::default();
        registry.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            start_time.clone(),
        );
        ProcessMetrics {
            registry,
            cpu,
            cpu_seen: AtomicU64::new(0),
            resident,
            virtual_memory,
            open_fds,
            max_fds,
            threads,
            start_time,
        }
    }

    /// Reads `/proc/self` and appends the metrics to `out` (nothing where
    /// `/proc` is unreadable).
    pub fn encode(&self, out: &mut String) {
        let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
        else {
            return;
        };
        // SAFETY: sysconf only reads a system constant.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        // c_long is i64 or i32 depending on the target.
        #[allow(clippy::useless_conversion)]
        let page = i64::from(page.max(1));
        let ticks = u64::try_from(ticks.max(1)).unwrap_or(100);
        // The counter only goes up: add what was spent since the last scrape.
        let previous = self.cpu_seen.swap(stat.cpu_ticks, Ordering::Relaxed);
        self.cpu
            .inc_by(stat.cpu_ticks.saturating_sub(previous) as f64 / ticks as f64);
        self.resident.set(stat.resident_pages.saturating_mul(page));
        self.virtual_memory
            .set(i64::try_from(stat.virtual_bytes).unwrap_or(i64::MAX));
        self.threads.set(stat.threads);
        if let Some(boot) = boot_time() {
            self.start_time
                .set((boot + stat.start_ticks / ticks) as i64);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            self.max_fds
                .set(i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX));
        }
        let _ = prometheus_client::encoding::text::encode_registry(out, &self.registry);
    }
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses
/// and may contain spaces, so fields are counted after its closing one.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts at field 3 (state); field n is at index n - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let utime: u64 = field(14)?.parse().ok()?;
    let stime: u64 = field(15)?.parse().ok()?;
    Some(Stat {
        cpu_ticks: utime + stime,
        threads: field(20)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
        virtual_bytes: field(23)?.parse().ok()?,
        resident_pages: field(24)?.parse().ok()?,
    })
}

/// The boot time in seconds since the epoch (`btime` in `/proc/stat`).
fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (ir server) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 \
                    17 0 123456 987654 2048 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                cpu_ticks: 200,
                threads: 17,
                start_ticks: 123456,
                virtual_bytes: 987654,
                resident_pages: 2048,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_described() {
        let m = ProcessMetrics::new();
        let mut out = String::new();
        m.encode(&mut out);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_threads ",
            "process_start_time_seconds ",
        ] {
            assert!(out.contains(name), "{name} missing in {out}");
        }
        assert!(!out.contains("# EOF"));
    }
}
