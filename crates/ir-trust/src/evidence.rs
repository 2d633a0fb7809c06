//! The signatures of one manifest as a judgement sees them: read from the
//! repository, or recalled from the [`Memo`] without reading or verifying
//! again, and which keys each verifies with.

use std::sync::Arc;

use ir_oci::Digest;

use crate::key::PublicKey;
use crate::memo::{ArtifactRecord, LayerRecord, Memo, SignedRecord};
use crate::payload::{self, Claim};
use crate::signatures::{self, ArtifactAt, ArtifactSource, Signature, MAX_SIGNATURES};

/// The signatures of one manifest and the work already done on them,
/// shared by every name the manifest is judged under. Read from the
/// source (or the [`Memo`]) only when a requirement needs signatures.
#[derive(Default)]
pub struct Evidence<'m> {
    memo: Option<&'m Memo>,
    entries: Option<Vec<Entry>>,
}

/// One signature layer, read or recalled.
pub(crate) struct Entry {
    /// Its artifact and where that was found (messages name it with the
    /// layer).
    found_at: Arc<ArtifactAt>,
    /// Its layer in that artifact (the memo and reading its signature
    /// bytes, when a key not tried yet needs them, go by both).
    layer: usize,
    pub(crate) kind: EntryKind,
}

impl Entry {
    /// Where it was found (`tag sha256-….sig layer 0`).
    pub(crate) fn origin(&self) -> String {
        format!("{} layer {}", self.found_at.origin(), self.layer)
    }
}

pub(crate) enum EntryKind {
    Signed {
        record: Arc<SignedRecord>,
        /// What a key verifies, once read (a record recalled from the memo
        /// has none until a key not tried before needs it).
        material: Option<Material>,
    },
    Notation {
        media_type: String,
        envelope: Vec<u8>,
    },
    Malformed(String),
}

/// The signed message and its signatures (any one may verify).
pub(crate) struct Material {
    message: Vec<u8>,
    signatures: Vec<Vec<u8>>,
}

impl<'m> Evidence<'m> {
    /// Evidence not read yet.
    pub fn new() -> Self {
        Evidence::default()
    }

    /// Evidence that recalls and records signature artifacts in `memo`.
    pub fn with_memo(memo: &'m Memo) -> Self {
        Evidence {
            memo: Some(memo),
            entries: None,
        }
    }

    /// The signatures of `digest`, read from `source` (or recalled) the
    /// first time.
    pub(crate) fn load(&mut self, source: &dyn ArtifactSource, digest: &Digest) {
        if self.entries.is_some() {
            return;
        }
        let mut entries = Vec::new();
        for at in signatures::artifacts(source, digest) {
            if entries.len() >= MAX_SIGNATURES {
                break;
            }
            // What the artifact is comes from its bytes, never from the
            // memo: a record is recalled only for an artifact of its kind.
            let Some(kind) = source
                .manifest(&at.digest)
                .and_then(|(_, bytes)| signatures::artifact_kind(bytes))
            else {
                continue;
            };
            let recalled = self
                .memo
                .and_then(|m| m.get(&at.digest))
                .filter(|r| r.kind == kind);
            let layers: Vec<EntryKind> = match recalled {
                Some(record) => record.layers.iter().cloned().map(recalled_entry).collect(),
                None => {
                    let Some((kind, layers)) = signatures::read_artifact(source, &at.digest) else {
                        continue;
                    };
                    let (layers, records): (Vec<EntryKind>, Vec<Option<LayerRecord>>) =
                        layers.into_iter().map(read_entry).unzip();
                    // Recorded only when every layer is a property of the
                    // artifact (see `read_entry`).
                    let records: Option<Vec<LayerRecord>> = records.into_iter().collect();
                    if let (Some(memo), Some(records)) = (self.memo, records) {
                        let layers = Arc::new(records);
                        memo.put(at.digest.clone(), ArtifactRecord { kind, layers });
                    }
                    layers
                }
            };
            let found_at = Arc::new(at);
            for (layer, kind) in layers.into_iter().enumerate() {
                // A repeated layer is the same signature again: nothing of
                // its own to judge (and no reason to mask the first's).
                if matches!(&kind, EntryKind::Malformed(why) if why.starts_with(signatures::REPEATED))
                {
                    continue;
                }
                entries.push(Entry {
                    found_at: found_at.clone(),
                    layer,
                    kind,
                });
            }
        }
        entries.truncate(MAX_SIGNATURES);
        self.entries = Some(entries);
    }

    /// Drops the signature bytes read so far, keeping what was learnt of
    /// them (claims, and which keys verify): a later judgement reads them
    /// again only for a key not tried yet. Notation envelopes are read
    /// again when next needed.
    pub fn release(&mut self) {
        let Some(entries) = &mut self.entries else {
            return;
        };
        if entries
            .iter()
            .any(|e| matches!(e.kind, EntryKind::Notation { .. }))
        {
            self.entries = None;
            return;
        }
        for e in entries {
            if let EntryKind::Signed { material, .. } = &mut e.kind {
                *material = None;
            }
        }
    }

    /// Reads the artifact of entry `index` once and gives every entry of
    /// that artifact still without signature bytes its own.
    fn read_material(&mut self, source: &dyn ArtifactSource, index: usize) {
        let Some(entries) = self.entries.as_mut() else {
            return;
        };
        let Some(at) = entries.get(index).map(|e| e.found_at.clone()) else {
            return;
        };
        let Some((_, layers)) = signatures::read_artifact(source, &at.digest) else {
            return;
        };
        let mut layers: Vec<Option<Signature>> = layers.into_iter().map(Some).collect();
        for e in entries.iter_mut().filter(|e| Arc::ptr_eq(&e.found_at, &at)) {
            let EntryKind::Signed { material, .. } = &mut e.kind else {
                continue;
            };
            if material.is_some() {
                continue;
            }
            if let Some(signature) = layers.get_mut(e.layer).and_then(Option::take) {
                if let EntryKind::Signed { material: m, .. } = read_entry(signature).0 {
                    *material = m;
                }
            }
        }
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        self.entries.as_deref().unwrap_or_default()
    }

    /// The artifact and layer signature `index` was read from.
    pub(crate) fn location(&self, index: usize) -> Option<(&Digest, usize)> {
        let entry = self.entries().get(index)?;
        Some((&entry.found_at.digest, entry.layer))
    }

    /// What signature `index`'s payload claims, if it is a sigstore
    /// signature.
    pub(crate) fn claims(&self, index: usize) -> Option<&Result<Vec<Claim>, String>> {
        match &self.entries().get(index)?.kind {
            EntryKind::Signed { record, .. } => Some(&record.claims),
            _ => None,
        }
    }

    /// Whether signature `index` verifies with `key`: recorded, or checked
    /// now (reading the signature bytes if only the record was recalled)
    /// and recorded.
    pub(crate) fn verifies(
        &mut self,
        source: &dyn ArtifactSource,
        index: usize,
        key: &PublicKey,
    ) -> bool {
        // A key whose file no longer loads is trusted by nothing, recorded
        // or not.
        if key.is_revoked() {
            return false;
        }
        let memo = self.memo;
        let needs_bytes = match self.entries.as_ref().and_then(|e| e.get(index)) {
            Some(Entry {
                kind: EntryKind::Signed { record, material },
                ..
            }) => {
                if let Some(ok) = record.verified_with(key.fingerprint()) {
                    return ok;
                }
                material.is_none()
            }
            _ => return false,
        };
        if needs_bytes {
            self.read_material(source, index);
        }
        let Some(entry) = self.entries.as_mut().and_then(|e| e.get_mut(index)) else {
            return false;
        };
        let EntryKind::Signed { record, material } = &mut entry.kind else {
            return false;
        };
        // Unreadable now (changed since it was verified): not verified,
        // and not recorded.
        let Some(m) = material else {
            return false;
        };
        let ok = m.signatures.iter().any(|s| key.verifies(&m.message, s));
        let fingerprint: Arc<str> = Arc::from(key.fingerprint());
        Arc::make_mut(record).keys.push((fingerprint.clone(), ok));
        if let Some(memo) = memo {
            memo.verified(&entry.found_at.digest, entry.layer, &fingerprint, ok);
        }
        ok
    }
}

/// An entry from a recalled layer record.
fn recalled_entry(layer: LayerRecord) -> EntryKind {
    match layer {
        LayerRecord::Malformed(why) => EntryKind::Malformed(why),
        LayerRecord::Signed(record) => EntryKind::Signed {
            record,
            material: None,
        },
    }
}

/// An entry from a signature just read, and its record for the memo
/// (`None` for notation, and for bytes that could not be read now: neither
/// is a property of the artifact alone).
fn read_entry(signature: Signature) -> (EntryKind, Option<LayerRecord>) {
    match signature {
        Signature::Malformed(why) => (
            EntryKind::Malformed(why.clone()),
            Some(LayerRecord::Malformed(why)),
        ),
        Signature::Unavailable(why) => (EntryKind::Malformed(why), None),
        Signature::Notation {
            media_type,
            envelope,
        } => (
            EntryKind::Notation {
                media_type,
                envelope,
            },
            None,
        ),
        Signature::Simple { payload, signature } => {
            let record = SignedRecord {
                unusable: None,
                claims: payload::simple_signing(&payload).map(|c| vec![c]),
                plausible: plausible_signature(&signature),
                keys: Vec::new(),
            };
            let material = Material {
                message: payload,
                signatures: vec![signature],
            };
            signed(record, material)
        }
        Signature::Dsse {
            payload_type,
            payload,
            signatures,
        } => {
            let in_toto = payload_type == payload::IN_TOTO_PAYLOAD_TYPE;
            let record = SignedRecord {
                unusable: (!in_toto)
                    .then(|| format!("DSSE payload type {payload_type:?} is not in-toto")),
                claims: if in_toto {
                    payload::in_toto(&payload)
                } else {
                    Err("not an in-toto statement".into())
                },
                plausible: signatures.last().is_some_and(|s| plausible_signature(s)),
                keys: Vec::new(),
            };
            let material = Material {
                message: payload::dsse_pae(&payload_type, &payload),
                signatures,
            };
            signed(record, material)
        }
    }
}

fn signed(record: SignedRecord, material: Material) -> (EntryKind, Option<LayerRecord>) {
    let record = Arc::new(record);
    (
        EntryKind::Signed {
            record: record.clone(),
            material: Some(material),
        },
        Some(LayerRecord::Signed(record)),
    )
}

/// True for a DER ECDSA signature (SEQUENCE of two INTEGERs), or a value of
/// an Ed25519 or RSA signature's size: a signature that is none of these is
/// damaged, not merely by another key.
fn plausible_signature(sig: &[u8]) -> bool {
    use x509_parser::der_parser::ber::BerObjectContent;
    use x509_parser::der_parser::der::parse_der;
    if let Ok((rest, obj)) = parse_der(sig) {
        if rest.is_empty() {
            if let BerObjectContent::Sequence(items) = &obj.content {
                return items.len() == 2
                    && items
                        .iter()
                        .all(|i| matches!(i.content, BerObjectContent::Integer(_)));
            }
        }
    }
    sig.len() == 64 || (256..=1024).contains(&sig.len())
}
