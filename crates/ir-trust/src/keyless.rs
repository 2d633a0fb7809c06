//! Keyless sigstore signatures (cosign signing with a Fulcio certificate
//! and logging to Rekor), verified offline as containers/image does for
//! `sigstoreSigned` with `fulcio` and `rekorPublicKey*`:
//!
//! 1. the Rekor signed entry timestamp (SET, the `dev.sigstore.cosign/bundle`
//!    annotation) verifies with a trusted Rekor key over the canonical JSON
//!    of its payload, and the logged `hashedrekord` entry is this signature,
//!    this certificate and this payload's SHA-256;
//! 2. the certificate (`dev.sigstore.cosign/certificate`, intermediates in
//!    `dev.sigstore.cosign/chain`) chains to a trusted Fulcio CA and has
//!    the code-signing purpose (as has every CA certificate that names
//!    purposes), every certificate valid at the SET's integrated
//!    time (the signing time Rekor vouches for; Fulcio certificates live
//!    ten minutes);
//! 3. its OIDC issuer extension (1.3.6.1.4.1.57264.1.1 or .1.8) and an
//!    e-mail address of its SubjectAltName are the policy's;
//! 4. the signature over the simple-signing payload verifies with the
//!    certificate's key.
//!
//! A sigstore bundle is verified the same way from its verification
//! material: the certificate, a `dsse` log entry with its inclusion
//! promise, and the signature over the envelope's PAE.
//!
//! Everything comes from the signature layer; nothing is fetched. The
//! chain is checked by webpki (rustls-webpki, already the chain verifier of
//! the notation path): it verifies at a given time and with a required
//! extended key usage (code signing), which is all Fulcio's chain needs;
//! the CA certificate's own validity, which webpki does not check for a
//! trust anchor, is checked here. Keyless verdicts are not memoised: each
//! judgement reads the layer's annotations again (a few KiB) and verifies.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use ir_oci::Digest;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use serde::Deserialize;
use webpki::aws_lc_rs as algs;
use x509_parser::prelude::*;

use crate::key::PublicKey;
use crate::payload::{dsse_pae, IN_TOTO_PAYLOAD_TYPE};
use crate::reason::Reason;
use crate::signatures::{
    artifact_kind, ArtifactKind, ArtifactSource, MAX_BUNDLE_BYTES, MAX_PAYLOAD_BYTES,
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING,
};

/// Annotation holding the Fulcio certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Annotation holding the intermediate certificates (PEM).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Annotation holding the Rekor SET (JSON).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// Largest CA file read.
pub const MAX_CA_FILE_BYTES: usize = 1 << 20;
/// Most certificates in a CA file.
pub const MAX_CA_CERTS: usize = 64;
/// Largest annotation read (a certificate chain is a few KiB).
const MAX_ANNOTATION_BYTES: usize = 64 * 1024;
/// Most certificates in a signature's chain annotation.
const MAX_CHAIN_CERTS: usize = 8;
/// Largest signature manifest parsed.
const MAX_MANIFEST_BYTES: usize = 256 * 1024;

const OID_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
const OID_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER content octets.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Algorithms certificates in a Fulcio chain may be signed with.
static CHAIN_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    algs::ECDSA_P256_SHA256,
    algs::ECDSA_P256_SHA384,
    algs::ECDSA_P384_SHA256,
    algs::ECDSA_P384_SHA384,
    algs::ECDSA_P521_SHA256,
    algs::ECDSA_P521_SHA384,
    algs::ECDSA_P521_SHA512,
    algs::ED25519,
    algs::RSA_PKCS1_2048_8192_SHA256,
    algs::RSA_PKCS1_2048_8192_SHA384,
    algs::RSA_PKCS1_2048_8192_SHA512,
    algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// A trusted Fulcio CA certificate.
struct Ca {
    anchor: TrustAnchor<'static>,
    not_before: i64,
    not_after: i64,
}

/// `fulcio` and `rekorPublicKey*` of a `sigstoreSigned` requirement.
pub struct Keyless {
    cas: Vec<Ca>,
    oidc_issuer: String,
    subject_email: String,
    rekor: Vec<Arc<PublicKey>>,
}

impl fmt::Debug for Keyless {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keyless({} CA(s), issuer {:?}, email {:?}, Rekor {:?})",
            self.cas.len(),
            self.oidc_issuer,
            self.subject_email,
            self.rekor
        )
    }
}

impl Keyless {
    /// The requirement from the CA certificates (PEM), the OIDC issuer, the
    /// subject e-mail and the Rekor keys (ECDSA).
    pub fn new(
        ca_pem: &[u8],
        oidc_issuer: &str,
        subject_email: &str,
        rekor: Vec<Arc<PublicKey>>,
    ) -> Result<Self, String> {
        if oidc_issuer.is_empty() || subject_email.is_empty() {
            return Err("fulcio needs a non-empty oidcIssuer and subjectEmail".into());
        }
        if rekor.is_empty() {
            return Err("fulcio needs a Rekor public key".into());
        }
        if let Some(k) = rekor.iter().find(|k| !k.kind().starts_with("ecdsa")) {
            return Err(format!(
                "a Rekor public key must be ECDSA, not {}",
                k.kind()
            ));
        }
        let mut cas = Vec::new();
        for (i, der) in CertificateDer::pem_slice_iter(ca_pem).enumerate() {
            if i >= MAX_CA_CERTS {
                return Err(format!("more than {MAX_CA_CERTS} CA certificates"));
            }
            let der = der.map_err(|e| format!("CA certificate {i}: PEM: {e}"))?;
            let (rest, cert) = X509Certificate::from_der(der.as_ref())
                .map_err(|e| format!("CA certificate {i}: {e}"))?;
            if !rest.is_empty() {
                return Err(format!("CA certificate {i}: trailing bytes"));
            }
            let validity = cert.validity();
            let (not_before, not_after) = (
                validity.not_before.timestamp(),
                validity.not_after.timestamp(),
            );
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| format!("CA certificate {i}: {e}"))?
                .to_owned();
            cas.push(Ca {
                anchor,
                not_before,
                not_after,
            });
        }
        if cas.is_empty() {
            return Err("no PEM CERTIFICATE in the Fulcio CA".into());
        }
        Ok(Keyless {
            cas,
            oidc_issuer: oidc_issuer.to_owned(),
            subject_email: subject_email.to_owned(),
            rekor,
        })
    }

    /// The Rekor keys.
    pub fn rekor_keys(&self) -> &[Arc<PublicKey>] {
        &self.rekor
    }
}

type Failure = (Reason, String);

fn bad(why: impl Into<String>) -> Failure {
    (Reason::BadSignature, why.into())
}

fn untrusted(why: impl Into<String>) -> Failure {
    (Reason::UntrustedKey, why.into())
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// Verifies layer `layer` of the signature artifact `artifact` as a keyless
/// signature under `keyless`; the signer (`email (issuer)`) when it is one.
/// Whether the payload is for the image is the caller's check.
pub(crate) fn verify(
    keyless: &Keyless,
    source: &dyn ArtifactSource,
    artifact: &Digest,
    layer: usize,
) -> Result<String, Failure> {
    let (_, bytes) = source
        .manifest(artifact)
        .ok_or_else(|| bad("the signature manifest is gone"))?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(bad("signature manifest too large"));
    }
    // The artifact is read as the judgement read it (`signatures`): a
    // bundle artifact's layers are bundles, a cosign artifact's are
    // simple-signing payloads, whatever else a layer claims to be.
    let kind = artifact_kind(bytes);
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("signature manifest: {e}")))?;
    let layer = m
        .layers
        .get(layer)
        .ok_or_else(|| bad("no such signature layer"))?;
    match kind {
        Some(ArtifactKind::Bundle) => return verify_bundle(keyless, source, &layer.digest),
        Some(ArtifactKind::Cosign) => {}
        _ => return Err(bad("not a sigstore signature artifact")),
    }
    if layer.media_type != SIMPLE_SIGNING {
        return Err(bad(format!(
            "layer type {:?} is not a signature",
            layer.media_type
        )));
    }
    let note = |name: &str| -> Result<Option<&str>, Failure> {
        match layer.annotations.get(name) {
            Some(v) if v.len() > MAX_ANNOTATION_BYTES => {
                Err(bad(format!("annotation {name} is too large")))
            }
            v => Ok(v.map(String::as_str)),
        }
    };
    let signature_text = note(SIGNATURE_ANNOTATION)?
        .ok_or_else(|| bad(format!("no {SIGNATURE_ANNOTATION} annotation")))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature_text.trim())
        .map_err(|e| bad(format!("signature is not base64: {e}")))?;
    let cert_pem = note(CERTIFICATE_ANNOTATION)?.ok_or_else(|| {
        untrusted(format!(
            "no Fulcio certificate ({CERTIFICATE_ANNOTATION} annotation): not a keyless signature"
        ))
    })?;
    let set = note(BUNDLE_ANNOTATION)?.ok_or_else(|| {
        bad(format!(
            "no Rekor signed entry timestamp ({BUNDLE_ANNOTATION} annotation)"
        ))
    })?;
    let chain = note(CHAIN_ANNOTATION)?;
    let payload_digest =
        Digest::parse(&layer.digest).map_err(|e| bad(format!("layer digest: {e}")))?;
    let payload = source
        .blob(&payload_digest, MAX_PAYLOAD_BYTES)
        .map_err(bad)?;

    let leaf = single_cert(cert_pem)?;
    let integrated = verify_set(&keyless.rekor, set, &leaf, &signature, &payload)?;
    let signer = verify_certificate(keyless, &leaf, chain, integrated)?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| bad(format!("Fulcio certificate: {e}")))?;
    let key = PublicKey::from_spki_der(cert.public_key().raw)
        .map_err(|e| bad(format!("Fulcio certificate key: {e}")))?;
    if !key.verifies(&payload, &signature) {
        return Err(bad(
            "the signature does not verify with the Fulcio certificate's key",
        ));
    }
    Ok(signer)
}

#[derive(Deserialize)]
struct Bundle {
    #[serde(rename = "verificationMaterial")]
    material: Material,
    #[serde(rename = "dsseEnvelope")]
    dsse: Option<Envelope>,
}

#[derive(Deserialize)]
struct Material {
    certificate: Option<RawCert>,
    #[serde(rename = "x509CertificateChain")]
    chain: Option<CertChain>,
    #[serde(rename = "tlogEntries", default)]
    tlog_entries: Vec<TlogEntry>,
}

#[derive(Deserialize)]
struct RawCert {
    #[serde(rename = "rawBytes")]
    raw_bytes: String,
}

#[derive(Deserialize)]
struct CertChain {
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
struct TlogEntry {
    #[serde(rename = "logIndex")]
    log_index: String,
    #[serde(rename = "logId")]
    log_id: LogId,
    #[serde(rename = "integratedTime")]
    integrated_time: String,
    #[serde(rename = "inclusionPromise")]
    inclusion_promise: Option<Promise>,
    #[serde(rename = "canonicalizedBody")]
    canonicalized_body: String,
}

#[derive(Deserialize)]
struct LogId {
    #[serde(rename = "keyId")]
    key_id: String,
}

#[derive(Deserialize)]
struct Promise {
    #[serde(rename = "signedEntryTimestamp")]
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
struct Envelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
struct DsseEntry {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    spec: DsseSpec,
}

#[derive(Deserialize)]
struct DsseSpec {
    #[serde(rename = "payloadHash")]
    payload_hash: RekordHash,
    signatures: Vec<DsseEntrySignature>,
}

#[derive(Deserialize)]
struct DsseEntrySignature {
    signature: String,
    verifier: String,
}

/// Most transparency log entries looked at in a bundle.
const MAX_TLOG_ENTRIES: usize = 8;

/// A sigstore bundle (v0.1 to v0.3) with a DSSE envelope, keyless: its
/// certificate, a `dsse` 0.0.1 log entry with an inclusion promise (the
/// SET) for this signature, certificate and payload, the chain and
/// identity at the integrated time, and the signature over the envelope's
/// PAE.
fn verify_bundle(
    keyless: &Keyless,
    source: &dyn ArtifactSource,
    digest: &str,
) -> Result<String, Failure> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let digest = Digest::parse(digest).map_err(|e| bad(format!("layer digest: {e}")))?;
    let bytes = source.blob(&digest, MAX_BUNDLE_BYTES).map_err(bad)?;
    let bundle: Bundle = serde_json::from_slice(&bytes).map_err(|e| bad(format!("bundle: {e}")))?;
    let env = bundle
        .dsse
        .ok_or_else(|| bad("bundle holds no dsseEnvelope"))?;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(bad(format!(
            "DSSE payload type {:?} is not in-toto",
            env.payload_type
        )));
    }
    let [signature] = env.signatures.as_slice() else {
        return Err(bad("a keyless DSSE envelope has exactly one signature"));
    };
    let signature = b64
        .decode(&signature.sig)
        .map_err(|e| bad(format!("DSSE signature is not base64: {e}")))?;
    let payload = b64
        .decode(&env.payload)
        .map_err(|e| bad(format!("DSSE payload is not base64: {e}")))?;
    let material = bundle.material;
    let mut certs: Vec<&RawCert> = Vec::new();
    if let Some(c) = &material.certificate {
        certs.push(c);
    } else if let Some(chain) = &material.chain {
        certs.extend(chain.certificates.iter().take(MAX_CHAIN_CERTS + 1));
    }
    let mut ders = Vec::with_capacity(certs.len());
    for c in certs {
        ders.push(CertificateDer::from(b64.decode(&c.raw_bytes).map_err(
            |e| bad(format!("bundle certificate is not base64: {e}")),
        )?));
    }
    let Some((leaf, intermediates)) = ders.split_first() else {
        return Err(untrusted(
            "the bundle holds no certificate: not a keyless signature",
        ));
    };
    if material.tlog_entries.is_empty() {
        return Err(bad("the bundle holds no transparency log entry"));
    }
    let mut last = bad("no transparency log entry with an inclusion promise");
    let mut integrated = None;
    for entry in material.tlog_entries.iter().take(MAX_TLOG_ENTRIES) {
        match verify_dsse_entry(keyless, entry, leaf, &signature, &payload) {
            Ok(t) => {
                integrated = Some(t);
                break;
            }
            Err(e) => last = e,
        }
    }
    let time = integrated.ok_or(last)?;
    let signer = verify_certificate_chain(keyless, leaf, intermediates.to_vec(), time)?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| bad(format!("Fulcio certificate: {e}")))?;
    let key = PublicKey::from_spki_der(cert.public_key().raw)
        .map_err(|e| bad(format!("Fulcio certificate key: {e}")))?;
    if !key.verifies(&dsse_pae(&env.payload_type, &payload), &signature) {
        return Err(bad(
            "the DSSE signature does not verify with the Fulcio certificate's key",
        ));
    }
    Ok(signer)
}

/// One bundle log entry: its SET verifies and its `dsse` body logs this
/// signature, certificate and payload; the integrated time.
fn verify_dsse_entry(
    keyless: &Keyless,
    entry: &TlogEntry,
    leaf: &CertificateDer<'_>,
    signature: &[u8],
    payload: &[u8],
) -> Result<i64, Failure> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let promise = entry
        .inclusion_promise
        .as_ref()
        .ok_or_else(|| bad("the log entry has no inclusion promise (signed entry timestamp)"))?;
    let set_signature = b64
        .decode(&promise.signed_entry_timestamp)
        .map_err(|e| bad(format!("signed entry timestamp is not base64: {e}")))?;
    let log_id = b64
        .decode(&entry.log_id.key_id)
        .map_err(|e| bad(format!("log ID is not base64: {e}")))?;
    let p = SetPayload {
        body: entry.canonicalized_body.clone(),
        integrated_time: entry
            .integrated_time
            .parse()
            .map_err(|_| bad("integratedTime is not a number"))?,
        log_index: entry
            .log_index
            .parse()
            .map_err(|_| bad("logIndex is not a number"))?,
        log_id: hex::encode(log_id),
    };
    let body = verify_set_payload(&keyless.rekor, &p, &set_signature)?;
    let logged: DsseEntry = ir_oci::json::from_slice(&body)
        .map_err(|e| bad(format!("Rekor entry is not a dsse entry: {e}")))?;
    if logged.kind != "dsse" || logged.api_version != "0.0.1" {
        return Err(bad(format!(
            "Rekor entry {} {} is not a dsse 0.0.1",
            logged.kind, logged.api_version
        )));
    }
    let hash = &logged.spec.payload_hash;
    if hash.algorithm != "sha256" || !hash.value.eq_ignore_ascii_case(&sha256_hex(payload)) {
        return Err(bad("the Rekor entry logs another payload"));
    }
    let logs_us = logged
        .spec
        .signatures
        .iter()
        .take(MAX_TLOG_ENTRIES)
        .any(|s| {
            b64.decode(&s.signature).is_ok_and(|sig| sig == signature)
                && b64
                    .decode(&s.verifier)
                    .ok()
                    .and_then(|pem| String::from_utf8(pem).ok())
                    .and_then(|pem| single_cert(&pem).ok())
                    .is_some_and(|c| c.as_ref() == leaf.as_ref())
        });
    if !logs_us {
        return Err(bad("the Rekor entry logs another signature or certificate"));
    }
    Ok(p.integrated_time)
}

/// The one certificate of a PEM text.
fn single_cert(pem: &str) -> Result<CertificateDer<'static>, Failure> {
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
    let first = certs
        .next()
        .ok_or_else(|| bad("no PEM certificate in the Fulcio certificate annotation"))?
        .map_err(|e| bad(format!("Fulcio certificate: PEM: {e}")))?;
    if certs.next().is_some() {
        return Err(bad(
            "more than one certificate in the certificate annotation",
        ));
    }
    Ok(first)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Set {
    #[serde(rename = "SignedEntryTimestamp")]
    signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    payload: SetPayload,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPayload {
    body: String,
    #[serde(rename = "integratedTime")]
    integrated_time: i64,
    #[serde(rename = "logIndex")]
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
struct HashedRekord {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    spec: HashedRekordSpec,
}

#[derive(Deserialize)]
struct HashedRekordSpec {
    data: RekordData,
    signature: RekordSignature,
}

#[derive(Deserialize)]
struct RekordData {
    hash: RekordHash,
}

#[derive(Deserialize)]
struct RekordHash {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct RekordSignature {
    content: String,
    #[serde(rename = "publicKey")]
    public_key: RekordKey,
}

#[derive(Deserialize)]
struct RekordKey {
    content: String,
}

/// The canonical JSON (RFC 8785) of a SET payload: keys sorted, no
/// whitespace. `body` is base64 and `logID` hex (checked), so neither
/// needs escaping.
fn canonical_payload(p: &SetPayload) -> String {
    format!(
        r#"{{"body":"{}","integratedTime":{},"logID":"{}","logIndex":{}}}"#,
        p.body, p.integrated_time, p.log_id, p.log_index
    )
}

/// Verifies the Rekor SET `set` for this certificate, signature and
/// payload; the integrated time (Unix seconds).
fn verify_set(
    rekor: &[Arc<PublicKey>],
    set: &str,
    leaf: &CertificateDer<'_>,
    signature: &[u8],
    payload: &[u8],
) -> Result<i64, Failure> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let set: Set =
        ir_oci::json::from_slice(set.as_bytes()).map_err(|e| bad(format!("Rekor SET: {e}")))?;
    let set_signature = b64.decode(&set.signed_entry_timestamp).map_err(|e| {
        bad(format!(
            "Rekor SET: SignedEntryTimestamp is not base64: {e}"
        ))
    })?;
    let body = verify_set_payload(rekor, &set.payload, &set_signature)?;
    let entry: HashedRekord = ir_oci::json::from_slice(&body)
        .map_err(|e| bad(format!("Rekor entry is not a hashedrekord: {e}")))?;
    if entry.kind != "hashedrekord" || entry.api_version != "0.0.1" {
        return Err(bad(format!(
            "Rekor entry {} {} is not a hashedrekord 0.0.1",
            entry.kind, entry.api_version
        )));
    }
    let logged_signature = b64
        .decode(&entry.spec.signature.content)
        .map_err(|e| bad(format!("Rekor entry signature: {e}")))?;
    if logged_signature != signature {
        return Err(bad("the Rekor entry logs another signature"));
    }
    let logged_pem = b64
        .decode(&entry.spec.signature.public_key.content)
        .map_err(|e| bad(format!("Rekor entry certificate: {e}")))?;
    let logged_cert = std::str::from_utf8(&logged_pem)
        .map_err(|_| bad("Rekor entry certificate is not PEM"))
        .and_then(single_cert)?;
    if logged_cert.as_ref() != leaf.as_ref() {
        return Err(bad("the Rekor entry logs another certificate"));
    }
    let hash = &entry.spec.data.hash;
    if hash.algorithm != "sha256" || !hash.value.eq_ignore_ascii_case(&sha256_hex(payload)) {
        return Err(bad("the Rekor entry logs another payload"));
    }
    Ok(set.payload.integrated_time)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// Verifies a SET's signature over its payload with a trusted Rekor key
/// (whose log ID it must name); the entry's body.
fn verify_set_payload(
    rekor: &[Arc<PublicKey>],
    p: &SetPayload,
    set_signature: &[u8],
) -> Result<Vec<u8>, Failure> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let is_b64 = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
    };
    if !is_b64(&p.body) || !p.log_id.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad("Rekor SET: body is not base64 or logID not hex"));
    }
    if p.integrated_time <= 0 || p.log_index < 0 {
        return Err(bad("Rekor SET: integratedTime or logIndex out of range"));
    }
    let canonical = canonical_payload(p);
    let Some(log_key) = rekor
        .iter()
        .find(|k| k.verifies(canonical.as_bytes(), set_signature))
    else {
        return Err(bad(
            "the Rekor signed entry timestamp verifies with no trusted Rekor key",
        ));
    };
    // The log's ID is the SHA-256 of its key: an entry of another log
    // signed with the same key is not taken for this one.
    if log_key.fingerprint().strip_prefix("sha256:") != Some(&p.log_id.to_ascii_lowercase()) {
        return Err(bad("Rekor SET: logID is not the Rekor key's"));
    }
    b64.decode(&p.body)
        .map_err(|e| bad(format!("Rekor SET body is not base64: {e}")))
}

/// The chain of `leaf` to a trusted CA at `time`, and its identity.
fn verify_certificate(
    keyless: &Keyless,
    leaf: &CertificateDer<'_>,
    chain: Option<&str>,
    time: i64,
) -> Result<String, Failure> {
    let mut intermediates: Vec<CertificateDer<'static>> = Vec::new();
    if let Some(chain) = chain {
        for (i, der) in CertificateDer::pem_slice_iter(chain.as_bytes()).enumerate() {
            if i >= MAX_CHAIN_CERTS {
                return Err(bad(format!(
                    "more than {MAX_CHAIN_CERTS} certificates in the chain annotation"
                )));
            }
            intermediates.push(der.map_err(|e| bad(format!("certificate chain: PEM: {e}")))?);
        }
    }
    verify_certificate_chain(keyless, leaf, intermediates, time)
}

/// [`verify_certificate`] with the intermediates parsed.
fn verify_certificate_chain(
    keyless: &Keyless,
    leaf: &CertificateDer<'_>,
    intermediates: Vec<CertificateDer<'_>>,
    time: i64,
) -> Result<String, Failure> {
    let at = UnixTime::since_unix_epoch(Duration::from_secs(time as u64));
    let ee = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| bad(format!("Fulcio certificate: {e}")))?;
    let anchors: Vec<TrustAnchor<'_>> = keyless.cas.iter().map(|c| c.anchor.clone()).collect();
    let path = ee
        .verify_for_usage(
            CHAIN_ALGS,
            &anchors,
            &intermediates,
            at,
            // The leaf's code-signing purpose is required below; a CA
            // certificate with purposes must include it, one without has
            // none to check (as Go's x509 and so containers/image decide).
            webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING),
            None,
            None,
        )
        .map_err(|e| {
            let when = rfc3339(time);
            untrusted(match e {
                webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
                    format!("the Fulcio certificate chain is not valid at the Rekor integrated time {when}: {e}")
                }
                e => format!("the Fulcio certificate does not chain to a trusted Fulcio CA for code signing at {when}: {e}"),
            })
        })?;
    let ca = anchors
        .iter()
        .position(|a| std::ptr::eq(a, path.anchor()))
        .map(|i| &keyless.cas[i]);
    if ca.is_none_or(|ca| time < ca.not_before || time > ca.not_after) {
        return Err(untrusted(format!(
            "the Fulcio CA is not valid at the Rekor integrated time {}",
            rfc3339(time)
        )));
    }

    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| bad(format!("Fulcio certificate: {e}")))?;
    let code_signing = cert
        .extended_key_usage()
        .map_err(|e| bad(format!("Fulcio certificate: extended key usage: {e}")))?
        .is_some_and(|eku| eku.value.code_signing);
    if !code_signing {
        return Err(untrusted(
            "the Fulcio certificate is not for code signing (no extended key usage codeSigning)",
        ));
    }
    let issuer = oidc_issuer(&cert)?;
    if issuer != keyless.oidc_issuer {
        return Err(untrusted(format!(
            "the Fulcio certificate's OIDC issuer is {issuer:?}, not {:?}",
            keyless.oidc_issuer
        )));
    }
    let emails = emails(&cert)?;
    if !emails.contains(&keyless.subject_email) {
        return Err(untrusted(format!(
            "the Fulcio certificate is issued to {emails:?}, not {:?}",
            keyless.subject_email
        )));
    }
    Ok(format!("{} ({issuer})", keyless.subject_email))
}

/// The OIDC issuer of a Fulcio certificate: its v1 extension (raw text),
/// its v2 extension (a DER UTF8String), or both when they agree.
fn oidc_issuer(cert: &X509Certificate<'_>) -> Result<String, Failure> {
    let (mut v1, mut v2) = (None, None);
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if oid == OID_ISSUER_V1 {
            let text = std::str::from_utf8(ext.value)
                .map_err(|_| bad("OIDC issuer extension is not UTF-8"))?;
            if v1.replace(text.to_owned()).is_some() {
                return Err(bad("two OIDC issuer (v1) extensions"));
            }
        } else if oid == OID_ISSUER_V2 {
            let text = match x509_parser::der_parser::der::parse_der_utf8string(ext.value) {
                Ok((&[], obj)) => obj
                    .as_str()
                    .map_err(|_| bad("OIDC issuer (v2) extension is not a UTF8String"))?
                    .to_owned(),
                _ => return Err(bad("OIDC issuer (v2) extension is not a UTF8String")),
            };
            if v2.replace(text).is_some() {
                return Err(bad("two OIDC issuer (v2) extensions"));
            }
        }
    }
    match (v1, v2) {
        (Some(a), Some(b)) if a != b => Err(bad(format!(
            "OIDC issuer extensions disagree: {a:?} and {b:?}"
        ))),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => Err(untrusted(
            "the Fulcio certificate has no OIDC issuer extension",
        )),
    }
}

/// The e-mail addresses of the SubjectAltName.
fn emails(cert: &X509Certificate<'_>) -> Result<Vec<String>, Failure> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| bad(format!("SubjectAltName: {e}")))?;
    Ok(san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::RFC822Name(e) => Some((*e).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Unix seconds as an RFC 3339 UTC time, for messages.
fn rfc3339(t: i64) -> String {
    ASN1Time::from_timestamp(t)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_payload_sorts_keys() {
        let p = SetPayload {
            body: "Ym9keQ==".into(),
            integrated_time: 1674247893,
            log_index: 11605770,
            log_id: "c0d2".into(),
        };
        assert_eq!(
            canonical_payload(&p),
            r#"{"body":"Ym9keQ==","integratedTime":1674247893,"logID":"c0d2","logIndex":11605770}"#
        );
    }
}
