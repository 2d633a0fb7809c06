//! The client's errors. [`Error`] is what a call returns; its `Display`
//! is one line naming what failed (the command line prints it), and the
//! variants that wrap a detail type keep the cause as data: the detail
//! enum says which rule failed, and its `source()` is the underlying
//! error (ir-oci's name or digest error, serde_json, rustls, ir-attest)
//! where there is one. The exit status comes from the variant
//! ([`Error::exit_code`], documented in docs/client.md).

use ir_oci::Digest;
use std::path::PathBuf;

/// Why a pull failed. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference does not parse, or does not fit the transport.
    #[error("{0}")]
    Reference(#[from] ReferenceError),
    /// Registry authentication failed: an auth file, a credential helper,
    /// a token endpoint. Never carries a credential.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The request could not be sent or its answer not read.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL requested.
        url: String,
        /// The whole cause chain, on one line.
        reason: String,
        /// reqwest's error, when the request failed in reqwest (not when
        /// an answer broke the protocol).
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The RA-TLS handshake failed because no attested certificate could
    /// be made (the token source refused or failed).
    #[error("{url}: RA-TLS attestation: {reason}")]
    Attestation {
        /// The URL requested.
        url: String,
        /// The step that failed, and the cause chain, on one line.
        reason: String,
        /// reqwest's error for the failed request.
        #[source]
        source: reqwest::Error,
    },
    /// The server closed the connection right after an RA-TLS handshake
    /// in which this client presented its attested certificate: it
    /// refused the attestation. Never retried: the same evidence would be
    /// refused again.
    #[error("{url}: the server refused this realm's attestation (it closed the connection right after the RA-TLS handshake); the reason is in the server's log, on its \"RA-TLS attestation refused\" line")]
    AttestationRefused {
        /// The URL requested.
        url: String,
        /// reqwest's error for the failed request.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{url}: HTTP {status}{message}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status.
        status: u16,
        /// The OCI error code and message, if any (with a leading `: `).
        message: String,
    },
    /// Content does not match its digest.
    #[error("{what}: digest mismatch: expected {expected}, content has {found}")]
    DigestMismatch {
        /// What was checked (a blob, a reference's manifest).
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        found: Digest,
    },
    /// Content does not have the size its descriptor says.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {found}")]
    Size {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// What arrived.
        found: String,
    },
    /// A manifest or index is malformed or unsupported.
    #[error("manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// No manifest of the index is for the wanted platform.
    #[error("index {index} has no manifest for platform {wanted} (available: {available})")]
    NoPlatform {
        /// The index's digest.
        index: Digest,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index lists.
        available: String,
    },
    /// The output layout is unusable.
    #[error("layout: {0}")]
    Layout(#[from] LayoutError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// TLS could not be configured.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The token source could not be set up.
    #[error("RA-TLS token: {0}")]
    Token(#[from] TokenError),
    /// A sync could not be done.
    #[error("{0}")]
    Sync(#[from] SyncError),
    /// The signature policy refuses the image (nothing was written).
    #[error("{image}: refused by the signature policy: {reason}")]
    Refused {
        /// The image as the policy named it (`host/name:tag`).
        image: String,
        /// The requirement, the reason code and the detail.
        reason: String,
    },
    /// The signature policy or a name it judges by cannot be used.
    #[error("{what}: {source}")]
    Policy {
        /// The flag and its value.
        what: String,
        /// Why (ir-trust's or ir-notation's error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The signature policy's files cannot be used.
    #[error(transparent)]
    TrustFiles(#[from] ir_trust::TrustFilesError),
}

impl Error {
    /// The process exit status for this error (documented in
    /// docs/client.md): 2 usage, 3 registry refusal, 4 verification,
    /// 5 attestation, 6 signature policy refusal, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Reference(_) | Error::Policy { .. } | Error::TrustFiles(_) => 2,
            Error::Refused { .. } => 6,
            Error::Sync(e) => e.exit_code(),
            Error::Status { .. } | Error::Auth(AuthError::TokenRefused { .. }) => 3,
            Error::DigestMismatch { .. }
            | Error::Size { .. }
            | Error::Manifest(_)
            | Error::NoPlatform { .. } => 4,
            Error::Attestation { .. } | Error::AttestationRefused { .. } | Error::Token(_) => 5,
            Error::Transport { .. }
            | Error::Auth(_)
            | Error::Layout(_)
            | Error::Io { .. }
            | Error::Tls(_) => 1,
        }
    }
}

/// Why a reference, or the flags that go with it, cannot be used (exit
/// status 2).
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The text does not have the reference's shape.
    #[error("reference {text:?}: {why}")]
    Syntax {
        /// The reference as given.
        text: String,
        /// Which part is wrong.
        why: &'static str,
    },
    /// The scheme is not `http`, `https` or `ra-tls`.
    #[error("reference {text:?}: unknown scheme {scheme:?}")]
    UnknownScheme {
        /// The reference as given.
        text: String,
        /// The scheme.
        scheme: String,
    },
    /// The repository name or the tag breaks the distribution grammar.
    #[error("reference {text:?}: {source}")]
    Name {
        /// The reference as given.
        text: String,
        /// ir-oci's verdict on the name or tag.
        #[source]
        source: ir_oci::name::NameError,
    },
    /// The digest after `@` is invalid.
    #[error("reference {text:?}: {source}")]
    Digest {
        /// The reference as given.
        text: String,
        /// ir-oci's verdict on the digest.
        #[source]
        source: ir_oci::digest::DigestError,
    },
    /// A registry URL is not `<scheme>://<host>[:<port>][/]`.
    #[error("registry {text:?}: {why}")]
    Registry {
        /// The URL as given.
        text: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The tag to write into the layout (`--tag`) is invalid.
    #[error("invalid tag {tag:?}")]
    Tag {
        /// The tag as given.
        tag: String,
        /// ir-oci's verdict.
        #[source]
        source: ir_oci::name::NameError,
    },
    /// The reference's scheme is not the one this client was made for.
    #[error("{what} needs the {wanted} transport, this client speaks {speaks}")]
    WrongTransport {
        /// What was asked for (`reference …`, `registry …`).
        what: String,
        /// The reference's scheme (`http`, `https`, `ra-tls`).
        wanted: &'static str,
        /// The client's.
        speaks: &'static str,
    },
    /// A blob was asked for by tag.
    #[error("reference {reference}: a blob is named by digest (NAME@sha256:…)")]
    BlobByTag {
        /// The reference.
        reference: String,
    },
    /// The connection flags do not fit the reference's scheme.
    #[error("{0}")]
    Flags(&'static str),
}

/// Why a manifest, index or listing is refused (exit status 4).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The answer is larger than the limit for it.
    #[error("{url}: larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// A paginated listing has more pages than followed.
    #[error("{url}: more than {limit} pages")]
    TooManyPages {
        /// The listing's first URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// A listing page is not a JSON object.
    #[error("{url}: not a JSON object: {source}")]
    NotJsonObject {
        /// The page's URL.
        url: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A listing's member is not a list.
    #[error("{url}: {field} is not a list")]
    NotAList {
        /// The page's URL.
        url: String,
        /// The member.
        field: String,
    },
    /// A referrers answer is not an image index.
    #[error("{url}: not an image index: {source}")]
    NotAnIndex {
        /// The URL.
        url: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A digest (in a descriptor or a header) is invalid.
    #[error("{what}: {source}")]
    Digest {
        /// Where the digest was.
        what: String,
        /// ir-oci's verdict.
        #[source]
        source: ir_oci::digest::DigestError,
    },
    /// oci-spec refused a digest ir-oci accepted.
    #[error("{digest}: {source}")]
    Descriptor {
        /// The digest.
        digest: Digest,
        /// oci-spec's error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The document is not JSON.
    #[error("{digest}: not JSON: {source}")]
    NotJson {
        /// The document's digest.
        digest: Digest,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// `schemaVersion` is not 2.
    #[error("{digest}: schemaVersion is not 2")]
    SchemaVersion {
        /// The document's digest.
        digest: Digest,
    },
    /// Neither the document nor the answer says what it is.
    #[error("{digest}: unknown media type {content_type:?}")]
    UnknownMediaType {
        /// The document's digest.
        digest: Digest,
        /// The answer's Content-Type.
        content_type: Option<String>,
    },
    /// The media type is neither an index nor an image manifest.
    #[error("{digest}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The document's digest.
        digest: Digest,
        /// The media type.
        media_type: String,
    },
    /// The document does not parse as the index it says it is.
    #[error("{digest}: index: {source}")]
    Index {
        /// The document's digest.
        digest: Digest,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The document does not parse as the image manifest it says it is.
    #[error("{digest}: manifest: {source}")]
    Manifest {
        /// The document's digest.
        digest: Digest,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The entry chosen for the platform is an index.
    #[error("{digest}: the platform's entry is an index, not an image manifest")]
    PlatformEntryIsIndex {
        /// The entry's digest.
        digest: Digest,
    },
    /// Indexes nest deeper than followed.
    #[error("{digest}: indexes nested deeper than {limit}")]
    TooDeep {
        /// The index at the limit.
        digest: Digest,
        /// The limit.
        limit: usize,
    },
    /// More manifests than one pull takes.
    #[error("{reference}: more than {limit} manifests")]
    TooManyManifests {
        /// The reference pulled.
        reference: String,
        /// The limit.
        limit: usize,
    },
}

/// Why the output layout is unusable (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A layout file is not JSON.
    #[error("{}: not JSON: {source}", path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// `oci-layout` names another version.
    #[error("{}: imageLayoutVersion is not 1.0.0", path.display())]
    Version {
        /// The `oci-layout` file.
        path: PathBuf,
    },
    /// `index.json` is larger than read.
    #[error("{}: too large", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// `index.json` has no `manifests` array.
    #[error("{}: no manifests array", path.display())]
    NoManifests {
        /// The file.
        path: PathBuf,
    },
}

/// Why TLS could not be configured (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file is not PEM.
    #[error("CA file: {0}")]
    CaFile(#[source] rustls::pki_types::pem::Error),
    /// A CA certificate is refused.
    #[error("CA certificate: {0}")]
    CaCertificate(#[source] rustls::Error),
    /// The CA file has no certificate.
    #[error("CA file holds no PEM certificate")]
    NoCaCertificate,
    /// The platform's roots could not be loaded.
    #[error("platform roots: {0}")]
    PlatformRoots(#[source] rustls::Error),
    /// The client certificate or its key (`--cert`, `--key`) cannot be
    /// used.
    #[error("{}: {why}", path.display())]
    ClientIdentity {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("{0}")]
    Config(#[source] rustls::Error),
    /// The HTTP client could not be built with it.
    #[error("{chain}")]
    Client {
        /// The cause chain on one line.
        chain: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}

/// Why the token source could not be set up (exit status 5).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A measurement is not hex.
    #[error("{what} {text:?} is not hex: {source}")]
    NotHex {
        /// Which measurement.
        what: String,
        /// The text given.
        text: String,
        /// The decoding error.
        #[source]
        source: hex::FromHexError,
    },
    /// A measurement's length does not fit the hash algorithm.
    #[error("{what} has {found} bytes, the hash algorithm needs {expected}")]
    MeasurementLength {
        /// Which measurement.
        what: String,
        /// Its length.
        found: usize,
        /// The hash's output length.
        expected: usize,
    },
    /// The hash algorithm is not one a realm uses.
    #[error("hash algorithm {0:?}: expected sha-256, sha-384 or sha-512")]
    HashAlgorithm(String),
    /// More than four REMs.
    #[error("a realm has 4 REMs, {0} given")]
    TooManyRems(usize),
    /// The emulated realm could not be made, loaded or saved.
    #[error("{0}")]
    Emulate(#[from] ir_attest::emulate::EmulateError),
    /// A realm-keys directory with one key of two.
    #[error("{}: has only one of {rak} and {cpak}", dir.display())]
    HalfKeys {
        /// The directory.
        dir: PathBuf,
        /// The realm attestation key's file name.
        rak: &'static str,
        /// The platform attestation key's file name.
        cpak: &'static str,
    },
    /// A token file is empty or too large.
    #[error("{}: a token file has 1 to {limit} bytes, found {len}", path.display())]
    FileSize {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The longest token file read.
        limit: u64,
    },
    /// `--rsi` without the `rsi` feature.
    #[error("--rsi needs ir-client built with the `rsi` feature")]
    RsiNotBuilt,
}

/// Why registry authentication failed. The messages name files, hosts,
/// helpers and URLs, never a user name's password, a token or the
/// content of an auth file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// An auth file could not be read.
    #[error("auth file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An auth file is larger than any real one.
    #[error("auth file {}: larger than {limit} bytes", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// An auth file is not the JSON of an auth file (where, not what).
    #[error("auth file {}: {why}", path.display())]
    FileSyntax {
        /// The file.
        path: PathBuf,
        /// Where it breaks (line and column, or the repeated key).
        why: String,
    },
    /// An `auths` entry cannot be used.
    #[error("auth file {}: auths.{host}: {why}", path.display())]
    Entry {
        /// The file.
        path: PathBuf,
        /// The entry's key.
        host: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} for {host}: {why}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// The registry asked about.
        host: String,
        /// What went wrong (its exit status, a timeout; never its output).
        why: String,
    },
    /// The registry's token realm may not be used.
    #[error("registry {host}: token realm {realm}: {why}")]
    Realm {
        /// The registry.
        host: String,
        /// The realm, as the registry gave it (without any query).
        realm: String,
        /// Why not.
        why: &'static str,
    },
    /// Credentials would go over plain HTTP to a host other than this
    /// machine.
    #[error("registry {host} asks for credentials over plain http: refused (use https://)")]
    PlainHttp {
        /// The registry.
        host: String,
    },
    /// The token endpoint could not be reached or read.
    #[error("token realm {realm}: {reason}")]
    TokenTransport {
        /// The realm.
        realm: String,
        /// The cause chain on one line.
        reason: String,
    },
    /// The token endpoint refused (wrong or missing credentials).
    #[error("token realm {realm} refused {who} for {host}: HTTP {status}")]
    TokenRefused {
        /// The realm.
        realm: String,
        /// The registry.
        host: String,
        /// `anonymous access` or `the credentials`, never the credentials.
        who: &'static str,
        /// The HTTP status.
        status: u16,
    },
    /// The token endpoint's answer is not a token.
    #[error("token realm {realm}: {why}")]
    TokenResponse {
        /// The realm.
        realm: String,
        /// What is wrong.
        why: String,
    },
}

/// The cause chain of an error on one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Why a sync could not be done (besides the registry and transport
/// errors every command has).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The sync file cannot be used.
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The arguments do not fit together.
    #[error("{0}")]
    Usage(String),
    /// The staged layout did not pass the server's loader.
    #[error("{name}: the staged copy fails verification ({}): {why}; the served layout is unchanged", staging.display())]
    Verify {
        /// The repository.
        name: String,
        /// The staging directory.
        staging: PathBuf,
        /// The loader's verdict.
        why: String,
    },
    /// A file-system step failed.
    #[error("{}: {why}", path.display())]
    Fs {
        /// The path.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// Another sync holds the root.
    #[error("{}: another ir-client sync holds this root", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

impl SyncError {
    /// The exit status (see `docs/client.md`).
    pub fn exit_code(&self) -> u8 {
        match self {
            SyncError::File { .. } | SyncError::Usage(_) => 2,
            SyncError::Verify { .. } => 4,
            SyncError::Fs { .. } | SyncError::Locked { .. } => 1,
        }
    }
}
