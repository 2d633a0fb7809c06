//! `ir-sign`: generates cosign key pairs, signs manifests of an OCI image
//! layout (cosign tag, referrers or sigstore bundle form) and verifies them,
//! all with sigstore-rs. Test support for ir-server's signature policy.
//!
//! Exit status: 0 on success, 1 on any failure (one line on stderr saying
//! why), 2 for a malformed command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ir_sign::keys::{self, KeyType};
use ir_sign::layout::Layout;
use ir_sign::{sign, verify, Error, Mode};

#[derive(Parser)]
#[command(
    name = "ir-sign",
    version,
    about = "cosign-compatible signing and verification of OCI image layouts (sigstore-rs)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes cosign.key (encrypted, cosign's format) and cosign.pub (PEM SPKI).
    GenerateKeyPair {
        /// Directory to write the two files into (created if missing).
        #[arg(long)]
        output_dir: PathBuf,
        #[command(flatten)]
        password: Password,
        /// Key type.
        #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
        key_type: KeyType,
    },
    /// Signs the manifest a tag (or digest) names in an OCI image layout.
    Sign {
        /// cosign's encrypted private key (cosign.key).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        password: Password,
        #[command(flatten)]
        target: Target,
        /// Image reference the signature is for (HOST/REPO[:TAG]), the payload's docker-reference
        /// (not written in bundle mode: cosign's bundle statement names no image).
        #[arg(long)]
        reference: String,
        /// How the signature is attached.
        #[arg(long, value_enum, default_value_t = Mode::Tag)]
        mode: Mode,
    },
    /// Verifies that one signature of the manifest verifies with the key, for the reference.
    Verify {
        /// Public key PEM (cosign.pub).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Image reference the signature must be for.
        #[arg(long)]
        reference: String,
        /// Count only signatures in this form (default: any).
        #[arg(long, value_enum)]
        mode: Option<Mode>,
    },
    /// Verifies that one keyless signature (tag form) of the manifest has a
    /// certificate from the Fulcio CA and a Rekor SET by the Rekor key.
    VerifyKeyless {
        /// Fulcio CA certificate PEM.
        #[arg(long)]
        fulcio: PathBuf,
        /// Rekor public key PEM.
        #[arg(long)]
        rekor_key: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Image reference the signature must be for.
        #[arg(long)]
        reference: String,
    },
}

#[derive(Args)]
struct Password {
    /// Password of the private key (default: $COSIGN_PASSWORD, else empty).
    #[arg(
        long,
        env = "COSIGN_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    password: String,
}

#[derive(Args)]
struct Target {
    /// Layout directory.
    #[arg(long)]
    layout: PathBuf,
    /// Tag (org.opencontainers.image.ref.name in index.json) of the manifest.
    #[arg(long, required_unless_present = "digest", conflicts_with = "digest")]
    tag: Option<String>,
    /// Digest (sha256:HEX) of the manifest.
    #[arg(long)]
    digest: Option<String>,
}

impl Target {
    fn resolve(&self) -> Result<(Layout, String), Error> {
        let layout = Layout::open(&self.layout)?;
        let digest = match (&self.tag, &self.digest) {
            (Some(tag), _) => layout.resolve_tag(tag)?.digest().to_string(),
            (None, Some(digest)) => digest.clone(),
            (None, None) => return Err(Error::Invalid("--tag or --digest is required".into())),
        };
        Ok((layout, digest))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)
}

fn run(cli: Cli) -> Result<String, Error> {
    match cli.command {
        Command::GenerateKeyPair {
            output_dir,
            password,
            key_type,
        } => {
            std::fs::create_dir_all(&output_dir).map_err(|source| Error::Io {
                path: output_dir.display().to_string(),
                source,
            })?;
            let pair = keys::generate(key_type, password.password.as_bytes())?;
            // Never overwrite a key (create_new): a lost private key cannot be recovered.
            write_new(
                &output_dir.join("cosign.key"),
                pair.private_pem.as_bytes(),
                0o600,
            )?;
            write_new(
                &output_dir.join("cosign.pub"),
                pair.public_pem.as_bytes(),
                0o644,
            )?;
            Ok(format!(
                "wrote {0}/cosign.key and {0}/cosign.pub",
                output_dir.display()
            ))
        }
        Command::Sign {
            key,
            password,
            target,
            reference,
            mode,
        } => {
            let signer = keys::load_signer(&read(&key)?, password.password.as_bytes())?;
            let (layout, digest) = target.resolve()?;
            let signed = sign::sign(&layout, signer, &digest, &reference, mode)?;
            Ok(format!(
                "signed {} for {reference} ({mode}): signature manifest {}{}",
                signed.subject,
                signed.signature_manifest,
                signed.tag.map(|t| format!(", tag {t}")).unwrap_or_default()
            ))
        }
        Command::Verify {
            key,
            target,
            reference,
            mode,
        } => {
            let public = read(&key)?;
            let (layout, digest) = target.resolve()?;
            let verified = verify::verify(&layout, &public, &digest, &reference, mode)?;
            Ok(format!(
                "verified {digest} for {reference}: {} signature in {} (layer {})",
                verified.mode, verified.signature_manifest, verified.layer
            ))
        }
        Command::VerifyKeyless {
            fulcio,
            rekor_key,
            target,
            reference,
        } => {
            let (layout, digest) = target.resolve()?;
            let verified = ir_sign::keyless::verify_keyless(
                &layout,
                &read(&fulcio)?,
                &read(&rekor_key)?,
                &digest,
                &reference,
            )?;
            Ok(format!(
                "verified {digest} for {reference}: keyless signature in {} (layer {})",
                verified.signature_manifest, verified.layer
            ))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ir-sign: {e}");
            ExitCode::FAILURE
        }
    }
}
