use std::process::ExitCode;

use clap::Parser;
use ir_server::{app, cli::Args, logging};

fn main() -> ExitCode {
    ir_server::memory::limit_arenas();
    let args = Args::parse();
    logging::init(args.log_format);
    if args.check {
        return app::check(&args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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
