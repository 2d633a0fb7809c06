//! The journal writer's cost per delivery record (what the `receipts`
//! thread spends for each manifest served): `cargo bench -p ir-receipts`.

use std::sync::Arc;

use ir_receipts::{CheckpointSigner, Delivery, Identity, Journal, JournalOptions};

fn main() {
    divan::main();
}

const BATCH: usize = 1000;

fn user() -> Arc<Identity> {
    Arc::new(Identity::User {
        name: "bench".into(),
    })
}

fn realm() -> Arc<Identity> {
    Arc::new(Identity::Realm {
        rim: "11".repeat(32),
        rems: std::array::from_fn(|i| format!("{i:02x}").repeat(32)),
        personalization: "00".repeat(64),
        platform_instance_id_sha256: "ab".repeat(32),
    })
}

fn delivery(identity: &Arc<Identity>) -> Delivery {
    Delivery {
        application: "hello".into(),
        tag: Some("latest".into()),
        digest: format!("sha256:{}", "5e".repeat(32)),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        identity: identity.clone(),
        policy_scope: None,
        policy_digest: None,
        reference_values_digest: None,
    }
}

/// A batch of records appended and written as the sink's writer does
/// (one flush per batch; a signed checkpoint every 1000 records).
fn append_batch(bencher: divan::Bencher, identity: Arc<Identity>) {
    let tmp = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        checkpoint_every: 1000,
        max_file_bytes: 64 << 20,
        server: "bench".into(),
    };
    let mut journal =
        Journal::open(&tmp.path().join("j"), CheckpointSigner::generate(), options).unwrap();
    bencher
        .counter(divan::counter::ItemsCount::new(BATCH))
        .with_inputs(|| (0..BATCH).map(|_| delivery(&identity)).collect::<Vec<_>>())
        .bench_local_values(|batch| {
            let at = std::time::SystemTime::now();
            for d in batch {
                journal.append_at((&d).into(), at).unwrap();
            }
            journal.flush().unwrap();
        });
}

#[divan::bench(sample_count = 50)]
fn user_records(bencher: divan::Bencher) {
    append_batch(bencher, user());
}

#[divan::bench(sample_count = 50)]
fn realm_records(bencher: divan::Bencher) {
    append_batch(bencher, realm());
}
