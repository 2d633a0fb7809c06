//! `veraison-mock`: runs [`ir_testkit::veraison_mock::MockVeraison`] for
//! end-to-end scripts. Prints its base URL as the first line of stdout,
//! writes the EAR verification key (JWK) to `--jwk-out`, and serves until
//! killed.
//!
//! ```text
//! veraison-mock [--listen ADDR] [--jwk-out FILE] [--latency-ms N]
//!               [--tls-cert PEM --tls-key PEM]
//!               [--status SUBMOD=affirming|warning|contraindicated|none]...
//!               [--fail new-session|evidence|delete=HTTP_STATUS]
//!               [--wrong-nonce] [--bad-signature] [--iat-offset SECS]
//! ```

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ir_testkit::veraison_mock::{Knobs, MockVeraison, Status, Step};

struct Args {
    listen: SocketAddr,
    jwk_out: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    knobs: Knobs,
}

const USAGE: &str = "usage: veraison-mock [--listen ADDR] [--jwk-out FILE] [--tls-cert PEM --tls-key PEM] [--latency-ms N] [--status SUBMOD=STATUS]... [--fail STEP=HTTP_STATUS] [--wrong-nonce] [--bad-signature] [--iat-offset SECS]";

fn parse() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:0".parse().expect("address"),
        jwk_out: None,
        tls_cert: None,
        tls_key: None,
        knobs: Knobs::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                args.listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--jwk-out" => args.jwk_out = Some(value()?.into()),
            "--tls-cert" => args.tls_cert = Some(value()?.into()),
            "--tls-key" => args.tls_key = Some(value()?.into()),
            "--latency-ms" => {
                let v = value()?;
                let ms: u64 = v.parse().map_err(|e| format!("--latency-ms {v}: {e}"))?;
                args.knobs.latency = Duration::from_millis(ms);
            }
            "--status" => {
                let v = value()?;
                let (submod, status) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--status {v}: expected SUBMOD=STATUS"))?;
                let status =
                    Status::parse(status).ok_or_else(|| format!("--status {v}: unknown status"))?;
                args.knobs.set_status(submod, status);
            }
            "--fail" => {
                let v = value()?;
                let (step, code) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--fail {v}: expected STEP=HTTP_STATUS"))?;
                let step = Step::parse(step).ok_or_else(|| format!("--fail {v}: unknown step"))?;
                let code: u16 = code.parse().map_err(|e| format!("--fail {v}: {e}"))?;
                args.knobs.fail = Some((step, code));
            }
            "--iat-offset" => {
                let v = value()?;
                args.knobs.iat_offset = v.parse().map_err(|e| format!("--iat-offset {v}: {e}"))?;
            }
            "--wrong-nonce" => args.knobs.wrong_nonce = true,
            "--bad-signature" => args.knobs.bad_signature = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(args)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("veraison-mock: {e}");
            return ExitCode::from(2);
        }
    };
    let started = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match (std::fs::read(cert), std::fs::read(key)) {
            (Ok(cert), Ok(key)) => MockVeraison::start_tls(args.listen, &cert, &key).await,
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("veraison-mock: TLS files: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => MockVeraison::start_on(args.listen).await,
    };
    let mock = match started {
        Ok(m) => m,
        Err(e) => {
            eprintln!("veraison-mock: listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    *mock.knobs() = args.knobs;
    if let Some(path) = &args.jwk_out {
        if let Err(e) = mock.write_public_jwk(path) {
            eprintln!("veraison-mock: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("{}", mock.url());
    let _ = std::io::stdout().flush();
    eprintln!(
        "veraison-mock: serving on {} (test verifier, NOT Veraison)",
        mock.url()
    );
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
