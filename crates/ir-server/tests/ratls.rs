//! RA-TLS end to end against the real transport: a realm emulated by
//! `ir-client` pulls through `ir-server`'s RA-TLS listener, with the
//! platform judged locally (CPAK) or by the mock Veraison. Every refusal is
//! asserted by its exact reason, as the server reports it.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pki::{make_ca, make_leaf, Ca};
use common::{options, TestServer};
use ir_attest::attestor::{Attestor, PlatformCheck};
use ir_attest::platform::PlatformKeys;
use ir_attest::veraison::{VeraisonClient, VeraisonConfig};
use ir_attest::{EarVerifier, EmulatedRealm, Measurements};
use ir_client::ratls::RaTlsOptions;
use ir_client::{Client, ClientOptions, TokenSource, Transport};
use ir_server::server::ConnLimits;
use ir_server::transport::ratls::{AttestationOutcome, RaTls};
use ir_testkit::veraison_mock::{MockVeraison, Status};
use ir_testkit::Root;
use serde_json::Value;
use tempfile::TempDir;

type Outcomes = Arc<Mutex<Vec<(SocketAddr, AttestationOutcome)>>>;

struct Harness {
    _root: Root,
    _dir: TempDir,
    server: TestServer,
    ca: Ca,
    realm: EmulatedRealm,
    outcomes: Outcomes,
}

enum Platform<'a> {
    /// Trust the realm's own emulated platform key.
    OwnCpak,
    /// Trust another platform's key.
    OtherCpak,
    /// Ask this Veraison.
    Veraison(&'a MockVeraison),
}

/// Serves `app`, `other` and `team/tools` over RA-TLS. The reference values
/// are the emulated realm's, edited by `edit`, limited to `app` and `team/*`.
async fn harness(platform: Platform<'_>, edit: impl FnOnce(&mut Value)) -> Harness {
    let root = Root::new();
    for name in ["app", "other", "team/tools"] {
        root.good(name);
    }
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    let dir = TempDir::new().unwrap();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let mut refs: Value =
        serde_json::from_str(&realm.reference_values_json("demo", Some(&["app", "team/*"])))
            .unwrap();
    edit(&mut refs);
    let refs_path = dir.path().join("realm.json");
    std::fs::write(&refs_path, serde_json::to_vec(&refs).unwrap()).unwrap();
    let check = match platform {
        Platform::OwnCpak => {
            PlatformCheck::Local(PlatformKeys::from_bytes(&realm.cpak_public_sec1()).unwrap())
        }
        Platform::OtherCpak => {
            let stranger = EmulatedRealm::generate(Measurements::default()).unwrap();
            PlatformCheck::Local(PlatformKeys::from_bytes(&stranger.cpak_public_sec1()).unwrap())
        }
        Platform::Veraison(mock) => {
            let mut config = VeraisonConfig::new(mock.url());
            config.timeout = Duration::from_secs(5);
            PlatformCheck::Veraison {
                client: VeraisonClient::new(config).unwrap(),
                ear: EarVerifier::from_jwk_json(mock.public_jwk_json().as_bytes()).unwrap(),
            }
        }
    };
    let attestor = Arc::new(Attestor::new(&refs_path, check, 16).unwrap());
    let ca = make_ca();
    let (cert, key) = make_leaf(&ca, dir.path(), 1, true);
    let certs = Arc::new(ir_server::tls::CertStore::load(&cert, &key).unwrap());
    let outcomes: Outcomes = Arc::default();
    let sink = outcomes.clone();
    let ratls = RaTls::new(certs, attestor, false).with_observer(Arc::new(move |peer, o| {
        sink.lock().unwrap().push((peer, o.clone()));
    }));
    let server = TestServer::serve_with(
        registry,
        Arc::new(ratls),
        options(ConnLimits::default()),
        "https",
    )
    .await;
    Harness {
        _root: root,
        _dir: dir,
        server,
        ca,
        realm,
        outcomes,
    }
}

impl Harness {
    fn client(&self, source: TokenSource) -> Client {
        self.client_with(source, RaTlsOptions::default())
    }

    fn client_with(&self, source: TokenSource, ra_tls: RaTlsOptions) -> Client {
        let transport = Transport::RaTls {
            ca: Some(self.ca.pem.clone().into_bytes()),
            token_source: source,
        };
        Client::with_options(
            transport,
            ClientOptions {
                http: ir_client::HttpOptions {
                    ra_tls,
                    ..Default::default()
                },
                ..ClientOptions::default()
            },
        )
        .unwrap()
    }

    fn url(&self, reference: &str) -> String {
        format!("ra-tls://localhost:{}/{reference}", self.server.addr.port())
    }

    async fn pull(
        &self,
        client: &Client,
        reference: &str,
    ) -> Result<ir_client::PullReport, ir_client::Error> {
        let out = TempDir::new().unwrap();
        client.pull(&self.url(reference), out.path()).await
    }

    /// The outcome the server reported for the latest connection.
    async fn last_outcome(&self) -> AttestationOutcome {
        for _ in 0..100 {
            if let Some((_, o)) = self.outcomes.lock().unwrap().last() {
                return o.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server reported no outcome");
    }

    /// Pulls `app` with `client`, expects a refusal, returns its reason.
    async fn refused(&self, client: &Client) -> &'static str {
        self.outcomes.lock().unwrap().clear();
        assert!(
            self.pull(client, "app:latest").await.is_err(),
            "pull succeeded"
        );
        match self.last_outcome().await {
            AttestationOutcome::Refused { reason, detail } => {
                assert!(!detail.is_empty());
                reason
            }
            o => panic!("expected a refusal, got {o:?}"),
        }
    }
}

fn set_ref(refs: &mut Value, key: &str, value: Value) {
    refs["realm"]["reference-values"][key] = value;
}

#[tokio::test]
async fn attested_realm_pulls_with_local_cpak() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    let report = h.pull(&c, "app:latest").await.unwrap();
    assert!(report.blobs >= 2);
    assert!(
        matches!(h.last_outcome().await, AttestationOutcome::Accepted(label) if label.contains("demo"))
    );
}

#[tokio::test]
async fn rim_mismatch_is_refused() {
    let h = harness(Platform::OwnCpak, |r| {
        set_ref(r, "rim", Value::from("ab".repeat(32)))
    })
    .await;
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "rim_mismatch"
    );
}

#[tokio::test]
async fn no_matching_rem_set_is_refused() {
    let h = harness(Platform::OwnCpak, |r| {
        set_ref(
            r,
            "rems",
            serde_json::json!([[
                "cd".repeat(32),
                "cd".repeat(32),
                "cd".repeat(32),
                "cd".repeat(32)
            ]]),
        )
    })
    .await;
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "rem_mismatch"
    );
}

#[tokio::test]
async fn replayed_token_is_refused() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let honest = h.client(TokenSource::emulated(h.realm.clone()));
    h.pull(&honest, "app:latest").await.unwrap();
    let recorded = honest.resolver().unwrap().last_session().unwrap().token;
    let replay = h.client(TokenSource::Fixed(Arc::new(recorded)));
    assert_eq!(h.refused(&replay).await, "challenge_mismatch");
}

#[tokio::test]
async fn tampered_realm_signature_is_refused() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let realm = h.realm.clone();
    let tampering = TokenSource::custom(move |req| {
        let mut token = realm
            .token(&req.realm_challenge)
            .map_err(|e| e.to_string())?;
        // The realm token comes last; its last byte is in its signature.
        let last = token.len() - 1;
        token[last] ^= 0x01;
        Ok(token)
    });
    assert_eq!(h.refused(&h.client(tampering)).await, "realm_signature");
}

#[tokio::test]
async fn untrusted_platform_key_is_refused() {
    let h = harness(Platform::OtherCpak, |_| {}).await;
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "platform_signature"
    );
}

#[tokio::test]
async fn veraison_affirming_accepts_and_deletes_its_session() {
    let mock = MockVeraison::start().await;
    let h = harness(Platform::Veraison(&mock), |_| {}).await;
    h.pull(
        &h.client(TokenSource::emulated(h.realm.clone())),
        "app:latest",
    )
    .await
    .unwrap();
    let c = mock.counters();
    assert!(c.evidence_posts >= 1);
    assert_eq!(c.sessions_created, c.sessions_deleted);
}

#[tokio::test]
async fn veraison_not_affirming_is_refused() {
    let mock = MockVeraison::start().await;
    let h = harness(Platform::Veraison(&mock), |_| {}).await;
    mock.knobs()
        .set_status("CCA_SSD_PLATFORM", Status::Contraindicated);
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "veraison_not_affirming"
    );
    mock.knobs().set_status("CCA_SSD_PLATFORM", Status::Warning);
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "veraison_not_affirming"
    );
}

#[tokio::test]
async fn veraison_unreachable_is_refused() {
    let mock = MockVeraison::start().await;
    let h = harness(Platform::Veraison(&mock), |_| {}).await;
    mock.stop_listening();
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "veraison_unreachable"
    );
}

#[tokio::test]
async fn bad_ear_signature_is_refused() {
    let mock = MockVeraison::start().await;
    let h = harness(Platform::Veraison(&mock), |_| {}).await;
    mock.knobs().bad_signature = true;
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "ear_signature"
    );
}

#[tokio::test]
async fn wrong_ear_nonce_is_refused() {
    let mock = MockVeraison::start().await;
    let h = harness(Platform::Veraison(&mock), |_| {}).await;
    mock.knobs().wrong_nonce = true;
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "ear_nonce"
    );
}

/// With a verifier that answers after 2 s, 8 concurrent handshakes finish
/// in about 2 s (not 16), and requests on an already attested connection
/// keep flowing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_veraison_blocks_neither_other_handshakes_nor_attested_traffic() {
    let mock = MockVeraison::start().await;
    let h = Arc::new(harness(Platform::Veraison(&mock), |_| {}).await);
    let attested = h.client(TokenSource::emulated(h.realm.clone()));
    let base = format!("https://localhost:{}", h.server.addr.port());
    assert_eq!(
        attested
            .http()
            .get(format!("{base}/v2/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    mock.knobs().latency = Duration::from_secs(2);
    let started = Instant::now();
    let mut handshakes = Vec::new();
    for _ in 0..8 {
        let h = h.clone();
        handshakes.push(tokio::spawn(async move {
            let c = h.client(TokenSource::emulated(h.realm.clone()));
            h.pull(&c, "app:latest").await.map(|_| ())
        }));
    }
    // Meanwhile the attested connection is served promptly.
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_millis(1500) {
        let t = Instant::now();
        let r = attested
            .http()
            .get(format!("{base}/v2/app/manifests/latest"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for hs in handshakes {
        hs.await.unwrap().unwrap();
    }
    let all = started.elapsed();
    assert!(
        all < Duration::from_secs(8),
        "8 slow attestations took {all:?}"
    );
    // Blocked behind an appraisal, a request would take the mock's 2 s;
    // the bound leaves room for a loaded machine (a debug build next to
    // another build took 1.1 s once).
    assert!(
        slowest < Duration::from_millis(1600),
        "an attested request took {slowest:?}"
    );
}

#[tokio::test]
async fn a_realm_sees_only_its_applications() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    h.pull(&c, "app:latest").await.unwrap();
    h.pull(&c, "team/tools:latest").await.unwrap();
    let base = format!("https://localhost:{}", h.server.addr.port());
    let zero = format!("sha256:{}", "0".repeat(64));
    for path in [
        "/v2/other/manifests/latest".to_string(),
        "/v2/other/tags/list".to_string(),
        format!("/v2/other/blobs/{zero}"),
        format!("/v2/other/referrers/{zero}"),
    ] {
        let r = c.http().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errors"][0]["code"], "NAME_UNKNOWN", "{path}");
    }
    let v: Value = c
        .http()
        .get(format!("{base}/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["app", "team/tools"]));
}

#[tokio::test]
async fn a_plain_tls_client_without_certificate_is_refused() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let c = Client::new(Transport::Tls {
        ca: Some(h.ca.pem.clone().into_bytes()),
    })
    .unwrap();
    h.outcomes.lock().unwrap().clear();
    let url = format!("https://localhost:{}/app:latest", h.server.addr.port());
    assert!(c.pull(&url, TempDir::new().unwrap().path()).await.is_err());
    assert!(matches!(
        h.last_outcome().await,
        AttestationOutcome::Refused {
            reason: "no_certificate",
            ..
        }
    ));
}

#[tokio::test]
async fn a_certificate_without_the_extension_is_refused() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let c = h.client_with(
        TokenSource::emulated(h.realm.clone()),
        RaTlsOptions {
            omit_token_extension: true,
            ..RaTlsOptions::default()
        },
    );
    assert_eq!(h.refused(&c).await, "missing_extension");
}
