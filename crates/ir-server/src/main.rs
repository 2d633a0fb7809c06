use std::process::ExitCode;

use ir_server::process::{logging, probe};
use ir_server::{app, config_file};

// jemalloc: flat memory under the soak where glibc malloc crept; see docs/benchmarks.md, "Soak".
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Most threads in tokio's blocking pool (tokio's default is 512). The pool
/// opens files and reads and hashes blob chunks (at most 256 KiB each), work
/// bound by the cores and the disk; reloads take one thread at a time.
/// Uncapped, a burst of blob requests left 60-120 threads behind that never
/// exited under steady load, and each burst raised peak RSS by their stacks
/// and thread caches (the soak's step-wise growth); with 16 the soak's
/// throughput was unchanged.
fn max_blocking_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (4 * cores).max(16)
}

fn main() -> ExitCode {
    // `ir-server probe URL` (the image's HEALTHCHECK). Checked before the
    // flags are parsed so that every flags-only command line is unchanged.
    let mut argv = std::env::args_os().skip(1);
    if argv.next().is_some_and(|a| a == probe::SUBCOMMAND) {
        return probe::main(argv);
    }
    let mut argv = std::env::args_os().skip(1);
    if argv
        .next()
        .is_some_and(|a| a == ir_server::audit::receipts_command::SUBCOMMAND)
    {
        return ir_server::audit::receipts_command::main(argv);
    }
    let parsed = match config_file::parse(std::env::args_os()) {
        Ok(p) => p,
        Err(config_file::CliError::Flags(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if parsed.args.print_config {
        print!("{}", config_file::print(&parsed.matches));
        return ExitCode::SUCCESS;
    }
    let args = parsed.args;
    logging::init(args.log_format);
    // Hash large blobs through memory maps; the handler that turns a bus
    // error (a blob truncated while hashed) into a rejection is
    // process-wide, so the binary installs it, not the library.
    if !ir_oci::loader::mapped::install_sigbus_handler() {
        tracing::warn!("no SIGBUS handler: large blobs are read, not mapped, while verified");
    }
    if args.check {
        return app::check(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(max_blocking_threads())
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(app::serve(args))
}
