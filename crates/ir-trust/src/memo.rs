//! What judging learned about signature artifacts, kept so that a reload,
//! another policy scope or (from a file) the next start does not read,
//! parse and verify the same artifact again.
//!
//! Sound because everything recorded is a function of bytes the artifact's
//! digest commits to: a manifest's digest covers its layers' digests and
//! annotations (where cosign keeps the signature), and a layer's digest
//! covers the payload or bundle. "Artifact D holds these claims, and its
//! signature verifies with the key whose SubjectPublicKeyInfo hashes to F"
//! stays true for as long as the artifact's digest is D. Keys are named by
//! that fingerprint, so a key taken out of the policy is never consulted,
//! and a key put in is tried against the signature bytes on first use.
//! Notation signatures are not recorded: their verdict also depends on the
//! time (certificate validity).
//!
//! The file is trusted as the policy is (operator state, written only by
//! the server): whoever can write it can make a signature count as
//! verified. [`Memo::load`] checks it as OpenSSH's StrictModes checks
//! `authorized_keys`: the file and every directory up to `/` must be owned
//! by the server's user or root and not writable by group or others (a
//! root-owned sticky directory such as `/tmp` is accepted above the file's
//! own directory). It refuses anything malformed too, and then starts
//! empty (everything is verified again), never half-read. What an
//! artifact is (a signature or not) is always decided from its bytes,
//! never from the file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use ir_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::payload::Claim;
use crate::signatures::{ArtifactKind, MAX_SIGNATURES};

/// Largest memo file read.
pub const MAX_MEMO_BYTES: u64 = 256 << 20;
/// Most claims kept for one signature (an in-toto statement's subjects).
const MAX_CLAIMS: usize = 64;
const SHARDS: usize = 16;

/// What one signature layer of an artifact holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerRecord {
    /// Not a usable signature, and why.
    Malformed(String),
    /// A sigstore signature (simple signing or a DSSE envelope), shared
    /// with the judgements that recall it.
    Signed(Arc<SignedRecord>),
}

/// A sigstore signature reduced to what a judgement needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRecord {
    /// Why no key can make it count, before any is tried (a DSSE payload
    /// type other than in-toto).
    pub unusable: Option<String>,
    /// What its payload claims, or why the payload does not parse.
    pub claims: Result<Vec<Claim>, String>,
    /// Whether the signature value is well formed (for a DSSE envelope:
    /// its last one), which tells a damaged signature from another key's.
    pub plausible: bool,
    /// Key fingerprints tried, and whether the signature verified with each.
    pub keys: Vec<(Arc<str>, bool)>,
}

impl SignedRecord {
    /// The recorded result for the key with this fingerprint, if tried.
    pub fn verified_with(&self, fingerprint: &str) -> Option<bool> {
        self.keys
            .iter()
            .find(|(k, _)| &**k == fingerprint)
            .map(|(_, ok)| *ok)
    }
}

/// Everything read from one signature artifact (its first
/// [`MAX_SIGNATURES`] layers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRecord {
    /// Cosign or bundle (notation artifacts are not recorded).
    pub kind: ArtifactKind,
    /// Per layer (shared with the judgements that recall it).
    pub layers: Arc<Vec<LayerRecord>>,
}

struct Slot {
    record: ArtifactRecord,
    /// The last judgement that used it.
    used: u32,
}

/// Why a memo file was not read or not written.
#[derive(Debug, thiserror::Error)]
pub enum MemoError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Others may write the file or its directory.
    #[error("{0}: writable by group or others, so not trusted")]
    Unprotected(PathBuf),
    /// The file or a directory above it is owned by another user.
    #[error("{path}: owned by uid {uid}, not by the server's user or root, so not trusted")]
    Owner {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Larger than [`MAX_MEMO_BYTES`].
    #[error("{0}: larger than {MAX_MEMO_BYTES} bytes")]
    TooLarge(PathBuf),
    /// Not a memo file of this version.
    #[error("{path}: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Records of signature artifacts by digest, shared by every judgement of
/// a process. Safe to use from many threads.
pub struct Memo {
    shards: Vec<Mutex<HashMap<Digest, Slot>>>,
    generation: AtomicU32,
    changed: AtomicBool,
}

impl Default for Memo {
    fn default() -> Self {
        Memo {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            generation: AtomicU32::new(0),
            changed: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Memo({} artifacts)", self.len())
    }
}

impl Memo {
    /// An empty memo.
    pub fn new() -> Self {
        Memo::default()
    }

    fn shard(&self, digest: &Digest) -> std::sync::MutexGuard<'_, HashMap<Digest, Slot>> {
        let i = digest.bytes().first().copied().unwrap_or(0) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The record of `artifact`, if there is one (marking it used).
    pub fn get(&self, artifact: &Digest) -> Option<ArtifactRecord> {
        let now = self.now();
        let mut shard = self.shard(artifact);
        let slot = shard.get_mut(artifact)?;
        slot.used = now;
        Some(slot.record.clone())
    }

    /// The kind of `artifact`, if recorded (marking it used).
    pub fn kind(&self, artifact: &Digest) -> Option<ArtifactKind> {
        let now = self.now();
        let mut shard = self.shard(artifact);
        let slot = shard.get_mut(artifact)?;
        slot.used = now;
        Some(slot.record.kind)
    }

    /// Records what `artifact` holds. Notation artifacts are not recorded.
    pub fn put(&self, artifact: Digest, record: ArtifactRecord) {
        if record.kind == ArtifactKind::Notation || record.layers.len() > MAX_SIGNATURES {
            return;
        }
        let used = self.now();
        let mut shard = self.shard(&artifact);
        if shard.get(&artifact).is_some_and(|s| s.record == record) {
            return;
        }
        shard.insert(artifact, Slot { record, used });
        self.changed.store(true, Ordering::Relaxed);
    }

    /// Records that layer `layer` of `artifact` verified (or not) with the
    /// key whose fingerprint is `fingerprint`.
    pub fn verified(&self, artifact: &Digest, layer: usize, fingerprint: &Arc<str>, ok: bool) {
        let mut shard = self.shard(artifact);
        let Some(slot) = shard.get_mut(artifact) else {
            return;
        };
        let recorded = slot.record.layers.get(layer).and_then(|l| match l {
            LayerRecord::Signed(s) => s.verified_with(fingerprint),
            LayerRecord::Malformed(_) => None,
        });
        if recorded.is_some() {
            return;
        }
        if let Some(LayerRecord::Signed(s)) = Arc::make_mut(&mut slot.record.layers).get_mut(layer)
        {
            if s.verified_with(fingerprint).is_none() {
                Arc::make_mut(s).keys.push((fingerprint.clone(), ok));
                self.changed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Starts a new judgement: [`Memo::forget_unused`] keeps what this one
    /// and the one before it use.
    pub fn next_generation(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops the records that neither the current judgement nor the one
    /// before it used, so that the memo stays the size of what is served.
    pub fn forget_unused(&self) {
        let now = self.now();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, s| now.wrapping_sub(s.used) <= 1);
            if shard.len() != before {
                self.changed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Artifacts recorded.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a memo written by [`Memo::save`]. A missing file is an empty
    /// memo.
    pub fn load(path: &Path) -> Result<Memo, MemoError> {
        let io = |source| MemoError::Io {
            path: path.to_owned(),
            source,
        };
        // Not followed: a link in the file's place is refused (its target
        // could be anyone's).
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                check_directory(path)?;
                return Ok(Memo::new());
            }
            Err(e) => return Err(io(e)),
        };
        check_directory(path)?;
        if !meta.is_file() || !protected(&meta) {
            return Err(MemoError::Unprotected(path.to_owned()));
        }
        check_owner(path, &meta)?;
        if meta.len() > MAX_MEMO_BYTES {
            return Err(MemoError::TooLarge(path.to_owned()));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Memo::from_bytes(&bytes).map_err(|why| MemoError::Malformed {
            path: path.to_owned(),
            why,
        })
    }

    /// A memo from the bytes of its file, or why they are not one (all or
    /// nothing: a file with one bad record is not used at all).
    pub fn from_bytes(bytes: &[u8]) -> Result<Memo, String> {
        File::decode(bytes).and_then(File::into_memo)
    }

    /// The bytes of its file.
    pub fn to_bytes(&self) -> Vec<u8> {
        File::of(self).encode()
    }

    /// Writes the memo to `path` (a new file renamed over the old one,
    /// readable only by its owner) when it changed since it was read or
    /// last written. True when it wrote.
    pub fn save(&self, path: &Path) -> Result<bool, MemoError> {
        if !self.changed.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        let io = |source| MemoError::Io {
            path: path.to_owned(),
            source,
        };
        let bytes = self.to_bytes();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let written = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            self.changed.store(true, Ordering::Relaxed);
            return Err(io(e));
        }
        Ok(true)
    }
}

/// The directories above `path`, up to `/`, may not let others replace
/// the file: each is owned by the server's user or root, and the file's
/// own directory is writable by no one else (one above it may be a
/// root-owned sticky directory, where others cannot rename what is not
/// theirs).
fn check_directory(path: &Path) -> Result<(), MemoError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let io = |dir: &Path, source| MemoError::Io {
        path: dir.to_owned(),
        source,
    };
    let dir = std::fs::canonicalize(dir).map_err(|e| io(dir, e))?;
    for (i, d) in dir.ancestors().enumerate() {
        let meta = std::fs::metadata(d).map_err(|e| io(d, e))?;
        check_owner(d, &meta)?;
        if !protected(&meta) && (i == 0 || !root_sticky(&meta)) {
            return Err(MemoError::Unprotected(d.to_owned()));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn protected(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o022 == 0
}

#[cfg(not(unix))]
fn protected(_: &std::fs::Metadata) -> bool {
    true
}

/// A sticky directory owned by root (`/tmp`).
#[cfg(unix)]
fn root_sticky(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.mode() & 0o1000 != 0 && meta.uid() == 0
}

#[cfg(not(unix))]
fn root_sticky(_: &std::fs::Metadata) -> bool {
    false
}

/// Owned by the server's (effective) user or by root.
#[cfg(unix)]
fn check_owner(path: &Path, meta: &std::fs::Metadata) -> Result<(), MemoError> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let uid = meta.uid();
    if uid == me || uid == 0 {
        Ok(())
    } else {
        Err(MemoError::Owner {
            path: path.to_owned(),
            uid,
        })
    }
}

#[cfg(not(unix))]
fn check_owner(_: &Path, _: &std::fs::Metadata) -> Result<(), MemoError> {
    Ok(())
}

/// What starts every memo file (and changes with its format).
const MAGIC: &[u8; 8] = b"irsigm\x00\x02";

/// The file, after [`MAGIC`], in postcard's compact binary encoding (a
/// start recalls 100,000 artifacts in milliseconds): key fingerprints
/// once, artifacts naming them by index.
#[derive(Serialize, Deserialize)]
struct File<'a> {
    #[serde(borrow)]
    keys: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    artifacts: Vec<FileArtifact<'a>>,
}

#[derive(Serialize, Deserialize)]
struct FileArtifact<'a> {
    #[serde(borrow)]
    digest: Cow<'a, str>,
    kind: FileKind,
    #[serde(borrow)]
    layers: Vec<FileLayer<'a>>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
enum FileKind {
    Cosign,
    Bundle,
}

#[derive(Serialize, Deserialize)]
enum FileLayer<'a> {
    Malformed(#[serde(borrow)] Cow<'a, str>),
    Signed {
        #[serde(borrow)]
        unusable: Option<Cow<'a, str>>,
        /// `(digest, reference)` per claim, or why the payload does not
        /// parse.
        #[serde(borrow)]
        claims: Result<Vec<FileClaim<'a>>, Cow<'a, str>>,
        plausible: bool,
        verified: Vec<u32>,
        refuted: Vec<u32>,
    },
}

type FileClaim<'a> = (Cow<'a, str>, Option<Cow<'a, str>>);

impl File<'_> {
    fn of(memo: &Memo) -> File<'static> {
        let mut keys: Vec<Cow<'static, str>> = Vec::new();
        let mut index: HashMap<Arc<str>, u32> = HashMap::new();
        let mut artifacts = Vec::new();
        for shard in &memo.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (digest, slot) in shard.iter() {
                let kind = match slot.record.kind {
                    ArtifactKind::Cosign => FileKind::Cosign,
                    ArtifactKind::Bundle => FileKind::Bundle,
                    ArtifactKind::Notation => continue,
                };
                let layers = slot
                    .record
                    .layers
                    .iter()
                    .map(|l| match l {
                        LayerRecord::Malformed(why) => {
                            FileLayer::Malformed(Cow::Owned(why.clone()))
                        }
                        LayerRecord::Signed(s) => {
                            let (mut verified, mut refuted) = (Vec::new(), Vec::new());
                            for (key, ok) in &s.keys {
                                let i = *index.entry(key.clone()).or_insert_with(|| {
                                    keys.push(Cow::Owned(key.to_string()));
                                    (keys.len() - 1) as u32
                                });
                                if *ok {
                                    verified.push(i);
                                } else {
                                    refuted.push(i);
                                }
                            }
                            FileLayer::Signed {
                                unusable: s.unusable.clone().map(Cow::Owned),
                                claims: match &s.claims {
                                    Ok(c) => Ok(c
                                        .iter()
                                        .map(|c| {
                                            (
                                                Cow::Owned(c.digest.clone()),
                                                c.reference.clone().map(Cow::Owned),
                                            )
                                        })
                                        .collect()),
                                    Err(e) => Err(Cow::Owned(e.clone())),
                                },
                                plausible: s.plausible,
                                verified,
                                refuted,
                            }
                        }
                    })
                    .collect();
                artifacts.push(FileArtifact {
                    digest: Cow::Owned(digest.to_string()),
                    kind,
                    layers,
                });
            }
        }
        File { keys, artifacts }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(postcard::to_allocvec(self).expect("a memo serializes"));
        out
    }

    fn decode(bytes: &[u8]) -> Result<File<'_>, String> {
        let body = bytes
            .strip_prefix(MAGIC)
            .ok_or("not a signature cache of this version")?;
        let (file, rest) =
            postcard::take_from_bytes::<File<'_>>(body).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(file)
    }

    fn into_memo(self) -> Result<Memo, String> {
        let keys: Vec<Arc<str>> = self.keys.iter().map(|k| Arc::from(&**k)).collect();
        let memo = Memo::new();
        for shard in &memo.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.reserve(self.artifacts.len() / SHARDS * 5 / 4);
        }
        for a in self.artifacts {
            let digest = Digest::parse(&a.digest).map_err(|e| format!("{}: {e}", a.digest))?;
            if a.layers.len() > MAX_SIGNATURES {
                return Err(format!("{digest}: more than {MAX_SIGNATURES} layers"));
            }
            let mut layers = Vec::with_capacity(a.layers.len());
            for l in a.layers {
                layers.push(layer_of(l, &keys).map_err(|why| format!("{digest}: {why}"))?);
            }
            let kind = match a.kind {
                FileKind::Cosign => ArtifactKind::Cosign,
                FileKind::Bundle => ArtifactKind::Bundle,
            };
            memo.shard(&digest).insert(
                digest,
                Slot {
                    record: ArtifactRecord {
                        kind,
                        layers: Arc::new(layers),
                    },
                    used: 0,
                },
            );
        }
        Ok(memo)
    }
}

fn layer_of(l: FileLayer<'_>, keys: &[Arc<str>]) -> Result<LayerRecord, String> {
    let FileLayer::Signed {
        unusable,
        claims,
        plausible,
        verified,
        refuted,
    } = l
    else {
        let FileLayer::Malformed(why) = l else {
            unreachable!("two variants")
        };
        return Ok(LayerRecord::Malformed(why.into_owned()));
    };
    let claims = match claims {
        Ok(c) if c.len() <= MAX_CLAIMS => Ok(c
            .into_iter()
            .map(|(digest, reference)| Claim {
                digest: digest.into_owned(),
                reference: reference.map(Cow::into_owned),
            })
            .collect()),
        Ok(_) => return Err(format!("more than {MAX_CLAIMS} claims")),
        Err(e) => Err(e.into_owned()),
    };
    let key = |i: u32| {
        keys.get(i as usize)
            .cloned()
            .ok_or_else(|| format!("key index {i} out of range"))
    };
    let mut recorded = Vec::with_capacity(verified.len() + refuted.len());
    for i in verified {
        recorded.push((key(i)?, true));
    }
    for i in refuted {
        recorded.push((key(i)?, false));
    }
    Ok(LayerRecord::Signed(Arc::new(SignedRecord {
        unusable: unusable.map(Cow::into_owned),
        claims,
        plausible,
        keys: recorded,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    fn record(key: &str) -> ArtifactRecord {
        ArtifactRecord {
            kind: ArtifactKind::Cosign,
            layers: Arc::new(vec![
                LayerRecord::Signed(Arc::new(SignedRecord {
                    unusable: None,
                    claims: Ok(vec![Claim {
                        digest: digest(9).to_string(),
                        reference: Some("r.io/a:1".into()),
                    }]),
                    plausible: true,
                    keys: vec![(Arc::from(key), true), (Arc::from("sha256:other"), false)],
                })),
                LayerRecord::Malformed("no annotation".into()),
            ]),
        }
    }

    #[test]
    fn a_saved_memo_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.json");
        let memo = Memo::new();
        memo.put(digest(1), record("sha256:k"));
        memo.verified(&digest(1), 0, &Arc::from("sha256:third"), true);
        assert!(memo.save(&path).unwrap());
        assert!(!memo.save(&path).unwrap(), "unchanged: not written again");
        let again = Memo::load(&path).unwrap();
        let mut want = record("sha256:k");
        if let LayerRecord::Signed(s) = &mut Arc::make_mut(&mut want.layers)[0] {
            Arc::make_mut(s)
                .keys
                .push((Arc::from("sha256:third"), true));
        }
        let got = again.get(&digest(1)).unwrap();
        let (LayerRecord::Signed(g), LayerRecord::Signed(w)) = (&got.layers[0], &want.layers[0])
        else {
            panic!("layer kinds differ")
        };
        assert_eq!(g.claims, w.claims);
        for (k, ok) in &w.keys {
            assert_eq!(g.verified_with(k), Some(*ok), "{k}");
        }
        assert_eq!(got.layers[1], want.layers[1]);
        assert_eq!(Memo::load(&dir.path().join("absent")).unwrap().len(), 0);
    }

    #[test]
    fn records_unused_for_two_judgements_are_forgotten() {
        let memo = Memo::new();
        memo.put(digest(1), record("sha256:k"));
        memo.put(digest(2), record("sha256:k"));
        memo.next_generation();
        assert!(memo.get(&digest(1)).is_some());
        memo.next_generation();
        memo.forget_unused();
        assert!(memo.kind(&digest(1)).is_some());
        assert!(memo.get(&digest(2)).is_none());
    }

    #[cfg(unix)]
    #[test]
    fn files_others_can_write_and_malformed_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.json");
        let memo = Memo::new();
        memo.put(digest(1), record("sha256:k"));
        memo.save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(Memo::load(&path), Err(MemoError::Unprotected(_))));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(Memo::load(&path), Err(MemoError::Unprotected(_))));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let good = std::fs::read(&path).unwrap();
        // Owned by another user (as root, tests can give it away): refused
        // however its mode reads; and so is a directory above it.
        if std::os::unix::fs::chown(&path, Some(65534), None).is_ok() {
            assert!(
                matches!(Memo::load(&path), Err(MemoError::Owner { uid: 65534, .. })),
                "another user's file"
            );
            std::os::unix::fs::chown(&path, Some(0), None).unwrap();
            std::os::unix::fs::chown(dir.path(), Some(65534), None).unwrap();
            assert!(matches!(Memo::load(&path), Err(MemoError::Owner { .. })));
            std::os::unix::fs::chown(dir.path(), Some(0), None).unwrap();
            assert!(Memo::load(&path).is_ok());
        }
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(Memo::load(&link), Err(MemoError::Unprotected(_))));
        let mut flipped = good.clone();
        flipped[3] ^= 1;
        let mut trailing = good.clone();
        trailing.push(0);
        for bad in [
            b"not a cache".to_vec(),
            flipped,
            good[..good.len() - 1].to_vec(),
            trailing,
            MAGIC.to_vec(),
            File {
                keys: vec![],
                artifacts: vec![FileArtifact {
                    digest: "sha256:zz".into(),
                    kind: FileKind::Cosign,
                    layers: vec![],
                }],
            }
            .encode(),
            File {
                keys: vec![],
                artifacts: vec![FileArtifact {
                    digest: digest(1).to_string().into(),
                    kind: FileKind::Cosign,
                    layers: vec![FileLayer::Signed {
                        unusable: None,
                        claims: Ok(vec![]),
                        plausible: true,
                        verified: vec![3],
                        refuted: vec![],
                    }],
                }],
            }
            .encode(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            assert!(
                matches!(Memo::load(&path), Err(MemoError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }
}
