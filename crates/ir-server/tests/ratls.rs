//! RA-TLS end to end against the real transport: a realm emulated by
//! `ir-client` pulls through `ir-server`'s RA-TLS listener, with the
//! platform judged locally (CPAK) or by the mock Veraison. Every refusal is
//! asserted by its exact reason, as the server reports it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::pki::{make_ca, make_leaf, Ca};
use crate::util::{options, TestServer};
use ir_attest::attestor::{Attestor, PlatformCheck};
use ir_attest::platform::PlatformKeys;
use ir_attest::veraison::{VeraisonClient, VeraisonConfig};
use ir_attest::{EarVerifier, EmulatedRealm, Measurements};
use ir_client::ratls::RaTlsOptions;
use ir_client::{Client, ClientOptions, TokenSource, Transport};
use ir_server::transport::ratls::{AttestationOutcome, RaTls};
use ir_server::transport::server::ConnLimits;
use ir_server::transport::ServeOptions;
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
    attestor: Arc<Attestor>,
    refs_path: std::path::PathBuf,
}

/// Server settings a test may change.
struct Setup {
    options: ServeOptions,
    max_attestations: usize,
    veraison_timeout: Duration,
    /// Bound on the Veraison session DELETE (default: the client's).
    veraison_delete_timeout: Option<Duration>,
    max_connection_age: Option<Duration>,
    allow_tls12: bool,
    /// A signature policy (containers-policy.json) the content is judged
    /// by, under `registry.test`, with the realms' policy scopes.
    policy: Option<Value>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            options: options(ConnLimits::default()),
            max_attestations: 16,
            veraison_timeout: Duration::from_secs(5),
            veraison_delete_timeout: None,
            max_connection_age: None,
            allow_tls12: false,
            policy: None,
        }
    }
}

enum Platform<'a> {
    /// Trust the realm's own emulated platform key.
    OwnCpak,
    /// Trust another platform's key.
    OtherCpak,
    /// Ask this Veraison.
    Veraison(&'a MockVeraison),
    /// The realm's own platform key as a trust-anchor list entry with
    /// these `reference-values`.
    OwnAnchor(Value),
    /// This platform key (own or other) and this Veraison, both required.
    CpakAndVeraison { own: bool, mock: &'a MockVeraison },
}

/// A trust-anchor list with one entry for `realm`'s platform.
fn anchor_list(realm: &EmulatedRealm, reference: Option<Value>) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let point = realm.cpak_public_sec1();
    let mut entry = serde_json::json!({
        "instance-id": hex::encode(realm.instance_id()),
        "pkey": {"kty": "EC", "crv": "P-384", "x": b64(&point[1..49]), "y": b64(&point[49..97])},
    });
    if let Some(r) = reference {
        entry["reference-values"] = r;
    }
    serde_json::json!([entry]).to_string()
}

fn veraison_check(mock: &MockVeraison, setup: &Setup) -> (VeraisonClient, EarVerifier) {
    let mut config = VeraisonConfig::new(mock.url());
    config.timeout = setup.veraison_timeout;
    if let Some(t) = setup.veraison_delete_timeout {
        config.delete_timeout = t;
    }
    (
        VeraisonClient::new(config).unwrap(),
        EarVerifier::from_jwk_json(mock.public_jwk_json().as_bytes()).unwrap(),
    )
}

/// Serves `app`, `other` and `team/tools` over RA-TLS. The reference values
/// are the emulated realm's, edited by `edit`, limited to `app` and `team/*`.
async fn harness(platform: Platform<'_>, edit: impl FnOnce(&mut Value)) -> Harness {
    harness_with(platform, edit, Setup::default()).await
}

async fn harness_with(
    platform: Platform<'_>,
    edit: impl FnOnce(&mut Value),
    setup: Setup,
) -> Harness {
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
            let (client, ear) = veraison_check(mock, &setup);
            PlatformCheck::Veraison { client, ear }
        }
        Platform::OwnAnchor(reference) => PlatformCheck::Local(
            PlatformKeys::from_bytes(anchor_list(&realm, Some(reference)).as_bytes()).unwrap(),
        ),
        Platform::CpakAndVeraison { own, mock } => {
            let key = if own {
                realm.cpak_public_sec1()
            } else {
                EmulatedRealm::generate(Measurements::default())
                    .unwrap()
                    .cpak_public_sec1()
            };
            let (client, ear) = veraison_check(mock, &setup);
            PlatformCheck::LocalAndVeraison {
                keys: PlatformKeys::from_bytes(&key).unwrap(),
                client,
                ear,
            }
        }
    };
    let attestor = Arc::new(Attestor::new(&refs_path, check, setup.max_attestations).unwrap());
    let ca = make_ca();
    let (cert, key) = make_leaf(&ca, dir.path(), 1, true);
    let certs = Arc::new(ir_server::transport::cert_store::CertStore::load(&cert, &key).unwrap());
    let outcomes: Outcomes = Arc::default();
    let sink = outcomes.clone();
    let mut ratls = RaTls::new(certs, attestor.clone(), setup.allow_tls12).with_observer(Arc::new(
        move |peer, o| {
            sink.lock().unwrap().push((peer, o.clone()));
        },
    ));
    if let Some(age) = setup.max_connection_age {
        ratls = ratls.with_max_connection_age(age);
    }
    let catalog = match &setup.policy {
        None => ir_server::snapshot::catalog::Catalog::new(registry),
        Some(policy) => {
            let file = dir.path().join("policy.json");
            std::fs::write(&file, serde_json::to_vec(policy).unwrap()).unwrap();
            let gate = ir_server::snapshot::policy_gate::Gate::new(
                ir_server::snapshot::policy_gate::TrustConfig::new(
                    Some(file),
                    None,
                    "registry.test",
                ),
            )
            .unwrap();
            gate.set_scopes(
                attestor
                    .references()
                    .realms()
                    .iter()
                    .filter_map(|r| r.policy_scope.clone()),
            );
            let judged = gate.apply(registry);
            ir_server::snapshot::catalog::Catalog::new(judged.registry)
                .with_views(Some((gate.host().to_owned(), judged.views)))
        }
    };
    let server = TestServer::serve_catalog(catalog, Arc::new(ratls), setup.options, "https").await;
    Harness {
        _root: root,
        _dir: dir,
        server,
        ca,
        realm,
        outcomes,
        attestor,
        refs_path,
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
                // No retries: each refusal is one outcome to assert on.
                http: ir_client::HttpOptions {
                    ra_tls,
                    retries: 0,
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
    assert!(no_open_sessions(&mock, Duration::from_secs(5)).await);
}

/// Whether `mock` has no open session within `within` (sessions are
/// deleted on a task of their own, after the appraisal).
async fn no_open_sessions(mock: &MockVeraison, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if mock.open_sessions() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mock.open_sessions() == 0
}

/// The session DELETE takes nothing from the handshake's time: an
/// appraisal affirmed near the deadline is accepted although the DELETE
/// that follows is slow (it ends on its own, later).
#[tokio::test]
async fn slow_veraison_delete_does_not_cost_an_affirmed_appraisal() {
    let mock = MockVeraison::start().await;
    {
        let mut k = mock.knobs();
        k.latency = Duration::from_millis(1500);
        k.delete_latency = Duration::from_secs(2);
    }
    let mut options = options(ConnLimits::default());
    options.handshake_timeout = Duration::from_secs(3);
    let h = harness_with(
        Platform::Veraison(&mock),
        |_| {},
        Setup {
            options,
            veraison_timeout: Duration::from_secs(2),
            // Longer than the exchange's bound: the DELETE has its own.
            veraison_delete_timeout: Some(Duration::from_secs(4)),
            ..Setup::default()
        },
    )
    .await;
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    assert_eq!(h.status(&c, "/v2/app/manifests/latest").await, 200);
    assert_eq!(h.accepted(), 1);
    assert!(no_open_sessions(&mock, Duration::from_secs(6)).await);
}

/// An appraisal dropped while its session DELETE is in flight still
/// deletes the session (the DELETE is not the appraisal's to cancel).
#[tokio::test]
async fn appraisal_dropped_during_the_delete_still_deletes_the_session() {
    let mock = MockVeraison::start().await;
    mock.knobs().delete_latency = Duration::from_millis(800);
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let nonce = [9u8; 64];
    let token = realm.token(&nonce).unwrap();
    let (client, _) = veraison_check(&mock, &Setup::default());
    // Long enough for the exchange, short of the DELETE.
    let _ = tokio::time::timeout(Duration::from_millis(400), client.appraise(&token, &nonce)).await;
    assert_eq!(mock.counters().sessions_created, 1);
    assert!(
        no_open_sessions(&mock, Duration::from_secs(5)).await,
        "the session was left open in Veraison"
    );
}

/// A handshake cancelled by its timeout while Veraison appraises leaves
/// no session behind.
#[tokio::test]
async fn handshake_timeout_during_the_appraisal_deletes_the_session() {
    let mock = MockVeraison::start().await;
    {
        let mut k = mock.knobs();
        k.latency = Duration::from_secs(4);
        k.delete_latency = Duration::from_millis(300);
    }
    let mut options = options(ConnLimits::default());
    options.handshake_timeout = Duration::from_secs(2);
    let h = harness_with(
        Platform::Veraison(&mock),
        |_| {},
        Setup {
            options,
            veraison_timeout: Duration::from_secs(1),
            veraison_delete_timeout: Some(Duration::from_secs(3)),
            ..Setup::default()
        },
    )
    .await;
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    assert!(h.pull(&c, "app:latest").await.is_err());
    assert!(mock.counters().sessions_created >= 1);
    assert!(no_open_sessions(&mock, Duration::from_secs(6)).await);
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
async fn a_realm_is_held_to_its_policy_scope() {
    // Production (the server's own name) takes nothing unsigned; the
    // scope test realms are held to takes anything.
    let policy = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {"test.registry": [{"type": "insecureAcceptAnything"}]}},
    });
    let production = harness_with(
        Platform::OwnCpak,
        |_| {},
        Setup {
            policy: Some(policy.clone()),
            ..Setup::default()
        },
    )
    .await;
    let c = production.client(TokenSource::emulated(production.realm.clone()));
    match production.pull(&c, "app:latest").await.unwrap_err() {
        ir_client::Error::Status {
            status, message, ..
        } => {
            assert_eq!(status, 404);
            assert!(message.contains("MANIFEST_UNKNOWN"), "{message}");
        }
        e => panic!("{e}"),
    }
    let test = harness_with(
        Platform::OwnCpak,
        |refs| refs["realm"]["policy-scope"] = "test.registry".into(),
        Setup {
            policy: Some(policy),
            ..Setup::default()
        },
    )
    .await;
    let c = test.client(TokenSource::emulated(test.realm.clone()));
    test.pull(&c, "app:latest").await.unwrap();
}

/// `_catalog` lists what the realm's policy scope serves: a realm whose
/// scope has no view yet (its entry changed since the last content load)
/// is served nothing and lists nothing, not the host view's names.
#[tokio::test]
async fn catalog_lists_only_what_the_realms_policy_scope_serves() {
    let policy = serde_json::json!({"default": [{"type": "insecureAcceptAnything"}]});
    let h = harness_with(
        Platform::OwnCpak,
        |refs| refs["realm"]["policy-scope"] = "test.registry".into(),
        Setup {
            policy: Some(policy),
            ..Setup::default()
        },
    )
    .await;
    let base = h.base();
    let catalog = |c: Client| {
        let url = format!("{base}/v2/_catalog");
        async move {
            let v: Value = c
                .http()
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["repositories"].clone()
        }
    };
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    assert_eq!(catalog(c).await, serde_json::json!(["app", "team/tools"]));
    // The entry now names a scope the content was not judged under.
    h.reload(|r| r["realm"]["policy-scope"] = "new.registry".into());
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    assert_eq!(h.status(&c, "/v2/app/manifests/latest").await, 404);
    assert_eq!(catalog(c).await, serde_json::json!([]));
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

#[tokio::test]
async fn veraison_ear_for_other_evidence_is_refused() {
    let mock = MockVeraison::start().await;
    let h = harness(Platform::Veraison(&mock), |_| {}).await;
    // A genuine, affirming EAR that Veraison issued for another realm's
    // token (on a platform it trusts), returned for ours.
    let elsewhere = EmulatedRealm::generate(Measurements::default()).unwrap();
    mock.knobs().annotate_as = Some(elsewhere.token(&[9; 64]).unwrap());
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "ear_evidence_mismatch"
    );
    // The same EAR about our own token is accepted.
    mock.reset_knobs();
    h.pull(
        &h.client(TokenSource::emulated(h.realm.clone())),
        "app:latest",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn ear_without_annotated_evidence_is_refused() {
    let mock = MockVeraison::start().await;
    let h = harness(Platform::Veraison(&mock), |_| {}).await;
    mock.knobs().omit_annotated_evidence = true;
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "ear_evidence_mismatch"
    );
}

#[tokio::test]
async fn ear_without_cca_ssd_platform_submod_is_refused() {
    let mock = MockVeraison::start().await;
    let h = harness(Platform::Veraison(&mock), |_| {}).await;
    mock.knobs().submods = vec![
        ("PSA_IOT".into(), Status::Affirming),
        ("CCA_REALM".into(), Status::Warning),
    ];
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "ear_submod_missing"
    );
}

#[tokio::test]
async fn location_outside_api_prefix_is_refused() {
    let mock = MockVeraison::start().await;
    let h = harness(Platform::Veraison(&mock), |_| {}).await;
    for location in ["/session/1", "../../other/session/1"] {
        mock.knobs().location = Some(location.into());
        let before = mock.counters().evidence_posts;
        assert_eq!(
            h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
                .await,
            "veraison_error",
            "{location}"
        );
        assert_eq!(mock.counters().evidence_posts, before, "{location}");
    }
}

#[tokio::test]
async fn cpak_and_veraison_both_required() {
    let mock = MockVeraison::start().await;
    // Both pass.
    let h = harness(
        Platform::CpakAndVeraison {
            own: true,
            mock: &mock,
        },
        |_| {},
    )
    .await;
    h.pull(
        &h.client(TokenSource::emulated(h.realm.clone())),
        "app:latest",
    )
    .await
    .unwrap();
    assert_eq!(mock.counters().evidence_posts, 1);
    // The platform key is right but Veraison does not affirm.
    mock.knobs()
        .set_status("CCA_SSD_PLATFORM", Status::Contraindicated);
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "veraison_not_affirming"
    );
    mock.reset_knobs();
    // Veraison would affirm, but the platform signature fails locally:
    // the token never reaches Veraison.
    let h = harness(
        Platform::CpakAndVeraison {
            own: false,
            mock: &mock,
        },
        |_| {},
    )
    .await;
    let before = mock.counters();
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "platform_signature"
    );
    let after = mock.counters();
    assert_eq!(after.requests, before.requests);
}

#[tokio::test]
async fn cpak_debug_lifecycle_is_refused() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    for lifecycle in [0x4000, 0x5000, 0x6000, 0x2000, 0x0000, 0x3100] {
        let mut realm = h.realm.clone();
        realm.lifecycle = lifecycle;
        assert_eq!(
            h.refused(&h.client(TokenSource::emulated(realm))).await,
            "platform_lifecycle",
            "{lifecycle:#x}"
        );
    }
    let mut realm = h.realm.clone();
    realm.lifecycle = 0x30ff;
    h.pull(&h.client(TokenSource::emulated(realm)), "app:latest")
        .await
        .unwrap();
}

/// The emulated platform's one software component, as a reference entry.
fn emulated_component() -> Value {
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let token = ir_attest::CcaToken::parse(&realm.token(&[0; 64]).unwrap()).unwrap();
    let c = &token.platform.claims.sw_components[0];
    serde_json::json!({
        "measurement-type": c.measurement_type,
        "measurement-value": hex::encode(&c.measurement),
        "signer-id": hex::encode(&c.signer_id),
        "version": c.version,
    })
}

#[tokio::test]
async fn cpak_platform_reference_values_are_matched() {
    let reference = serde_json::json!({
        "profile": "http://arm.com/CCA-SSD/1.0.0",
        "sw-components": [emulated_component()],
    });
    let h = harness(Platform::OwnAnchor(reference), |_| {}).await;
    h.pull(
        &h.client(TokenSource::emulated(h.realm.clone())),
        "app:latest",
    )
    .await
    .unwrap();
    // Another profile is refused.
    let h = harness(
        Platform::OwnAnchor(serde_json::json!({"profile": "tag:arm.com,2023:cca_platform#1.0.0"})),
        |_| {},
    )
    .await;
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "platform_mismatch"
    );
}

#[tokio::test]
async fn cpak_unknown_platform_component_is_refused() {
    // The reference lists another RMM: the token's component is unknown.
    let mut other = emulated_component();
    other["measurement-value"] = Value::from("ab".repeat(32));
    let h = harness(
        Platform::OwnAnchor(serde_json::json!({"sw-components": [other]})),
        |_| {},
    )
    .await;
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "platform_mismatch"
    );
    // Same measurement, another signer: unknown too.
    let mut signer = emulated_component();
    signer["signer-id"] = Value::from("01".repeat(32));
    let h = harness(
        Platform::OwnAnchor(serde_json::json!({"sw-components": [signer]})),
        |_| {},
    )
    .await;
    assert_eq!(
        h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
            .await,
        "platform_mismatch"
    );
}

/// The platform configuration (2401) and the components' hash algorithm
/// are compared when the reference values give them: the emulated
/// platform's own values pass, another configuration or algorithm is
/// refused.
#[tokio::test]
async fn cpak_platform_config_and_hash_algorithm_are_matched() {
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let own = realm.platform_reference_values();
    let h = harness(Platform::OwnAnchor(own.clone()), |_| {}).await;
    h.pull(
        &h.client(TokenSource::emulated(h.realm.clone())),
        "app:latest",
    )
    .await
    .unwrap();
    let mut config = own.clone();
    config["platform-config"] = "00".into();
    let mut platform_alg = own.clone();
    platform_alg["hash-algo-id"] = "sha-512".into();
    let mut component_alg = own;
    component_alg["sw-components"][0]["hash-algo-id"] = "sha-384".into();
    for reference in [config, platform_alg, component_alg] {
        let h = harness(Platform::OwnAnchor(reference.clone()), |_| {}).await;
        assert_eq!(
            h.refused(&h.client(TokenSource::emulated(h.realm.clone())))
                .await,
            "platform_mismatch",
            "{reference}"
        );
    }
}

#[tokio::test]
async fn same_measurements_other_personalization_is_refused() {
    // Two tenants run the same image with different personalization
    // values, and get different applications.
    let h = harness(Platform::OwnCpak, |r| {
        let mut a = r.clone();
        a["realm"]["name"] = "tenant-a".into();
        a["realm"]["reference-values"]["personalization-value"] = "aa".repeat(64).into();
        a["realm"]["applications"] = serde_json::json!(["app"]);
        let mut b = r.clone();
        b["realm"]["name"] = "tenant-b".into();
        b["realm"]["reference-values"]["personalization-value"] = "bb".repeat(64).into();
        b["realm"]["applications"] = serde_json::json!(["team/*"]);
        *r = serde_json::json!([a, b]);
    })
    .await;
    let with = |pv: u8| {
        let mut realm = h.realm.clone();
        realm.personalization = [pv; 64];
        h.client(TokenSource::emulated(realm))
    };
    // Another personalization value: refused.
    assert_eq!(h.refused(&with(0xcc)).await, "personalization_mismatch");
    // Tenant A sees app only, tenant B team/* only.
    let a = with(0xaa);
    h.pull(&a, "app:latest").await.unwrap();
    assert!(h.pull(&a, "team/tools:latest").await.is_err());
    let b = with(0xbb);
    h.pull(&b, "team/tools:latest").await.unwrap();
    assert!(h.pull(&b, "app:latest").await.is_err());
}

/// Runs the ir-server binary with `args` after `-t ra-tls` and a valid
/// certificate, and returns whether it started (it said it is serving, or
/// was still running after 20 s; it is then killed) rather than exiting
/// non-zero, and its output.
fn run_server_expecting_exit(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let ca = make_ca();
    let (cert, key) = make_leaf(&ca, dir, 1, true);
    let out_path = dir.join("server.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ir-server"))
        .args(["-t", "ra-tls", "-p", "0", "--bind", "127.0.0.1", "-r"])
        .arg(dir)
        .arg("-c")
        .arg(&cert)
        .arg("-k")
        .arg(&key)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut refused = false;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            refused = !status.success();
            break;
        }
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if text.contains("serving the OCI pull API") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    (
        !refused,
        std::fs::read_to_string(&out_path).unwrap_or_default(),
    )
}

/// Writes reference values (an emulated realm's) and a freshly generated
/// Veraison EAR key into `dir`: the `-j` and `-v` files.
fn trust_files(dir: &std::path::Path) -> (String, String) {
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let refs = dir.join("realm.json");
    std::fs::write(&refs, realm.reference_values_json("demo", None)).unwrap();
    let key = dir.join("ear.jwk");
    let signer = ir_attest::ear::test_util::EarSigner::generate();
    std::fs::write(&key, signer.public_jwk()).unwrap();
    let s = |p: std::path::PathBuf| p.display().to_string();
    (s(refs), s(key))
}

/// The RFC 9052 example key that Veraison ships as its demo EAR key.
fn published_key_file() -> String {
    format!(
        "{}/../ir-testkit/fixtures/published-rfc9052-key11.jwk",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn plain_http_veraison_off_loopback_is_a_startup_error() {
    let dir = TempDir::new().unwrap();
    let (refs, key) = trust_files(dir.path());
    for url in ["http://192.0.2.1:8080", "http://veraison.example:8080"] {
        let (ok, text) =
            run_server_expecting_exit(dir.path(), &["-j", &refs, "-v", &key, "-u", url]);
        assert!(!ok, "{url}: {text}");
        assert!(text.contains("loopback"), "{url}: {text}");
    }
}

/// `--proxy-protocol` alone would let any client name its address: the
/// server refuses to start, and says which flag is missing.
#[test]
fn proxy_protocol_without_its_sources_is_a_startup_error() {
    let dir = TempDir::new().unwrap();
    let (ok, text) = run_server_expecting_exit(dir.path(), &["--proxy-protocol"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("--proxy-protocol needs --proxy-protocol-from"),
        "{text}"
    );
}

#[test]
fn default_build_refuses_insecure_skip_challenge() {
    if ir_attest::INSECURE_SKIP_CHALLENGE_AVAILABLE {
        // A build with the feature: the flag is accepted there (and the
        // server says it is insecure); nothing to show here.
        return;
    }
    let dir = TempDir::new().unwrap();
    let (refs, key) = trust_files(dir.path());
    let (ok, text) = run_server_expecting_exit(
        dir.path(),
        &["-j", &refs, "-v", &key, "--insecure-skip-challenge"],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("insecure-skip-challenge"), "{text}");
    assert!(text.contains("available in this build: false"), "{text}");
}

/// RA-TLS has no default trust inputs: without -j, or without -v when
/// Veraison judges the platforms, the server does not start and says what
/// to pass; with both it starts.
#[test]
fn ra_tls_without_reference_values_or_veraison_key_does_not_start() {
    let dir = TempDir::new().unwrap();
    let (refs, key) = trust_files(dir.path());
    let (ok, text) = run_server_expecting_exit(dir.path(), &["-v", &key]);
    assert!(!ok, "{text}");
    assert!(text.contains("needs -j FILE|DIR"), "{text}");
    for args in [
        &["-j", &refs][..],
        &["-j", &refs, "-u", "http://127.0.0.1:9"],
    ] {
        let (ok, text) = run_server_expecting_exit(dir.path(), args);
        assert!(!ok, "{args:?}: {text}");
        assert!(text.contains("needs -v FILE"), "{args:?}: {text}");
    }
    let (ok, text) = run_server_expecting_exit(dir.path(), &["-j", &refs, "-v", &key]);
    assert!(ok, "{text}");
}

/// Veraison's demo EAR key (RFC 9052's example key "11", whose private
/// half is in the RFC) as -v: refused at start unless --insecure-dev-keys,
/// then started with a warning.
#[test]
fn published_veraison_key_is_refused_at_start() {
    let dir = TempDir::new().unwrap();
    let (refs, _) = trust_files(dir.path());
    let published = published_key_file();
    let (ok, text) = run_server_expecting_exit(dir.path(), &["-j", &refs, "-v", &published]);
    assert!(!ok, "{text}");
    assert!(text.contains("-v "), "{text}");
    assert!(text.contains("private key is published"), "{text}");
    assert!(text.contains("--insecure-dev-keys"), "{text}");
    // The same point as PEM is the same key.
    let pem = dir.path().join("published.pem");
    let key = ir_attest::PublicKey::from_jwk_json(&std::fs::read(&published).unwrap()).unwrap();
    std::fs::write(&pem, spki_pem(&key)).unwrap();
    let (ok, text) = run_server_expecting_exit(
        dir.path(),
        &[
            "-j",
            &refs,
            "--cpak-any-firmware",
            "--cpak",
            pem.to_str().unwrap(),
        ],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("--cpak "), "{text}");
    assert!(text.contains("private key is published"), "{text}");
    let (ok, text) = run_server_expecting_exit(
        dir.path(),
        &["-j", &refs, "-v", &published, "--insecure-dev-keys"],
    );
    assert!(ok, "{text}");
    assert!(text.contains("INSECURE (--insecure-dev-keys)"), "{text}");
}

/// A P-256 key as a PEM SubjectPublicKeyInfo.
fn spki_pem(key: &ir_attest::PublicKey) -> String {
    use base64::Engine as _;
    // id-ecPublicKey with prime256v1, then the 65-byte point.
    let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    der.extend(key.to_sec1());
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

/// A --cpak key that pins no firmware (a single key, or a trust-anchor
/// entry without sw-components) is refused at start unless
/// --cpak-any-firmware; a pinned entry starts, and the start-up log says
/// per key whether its firmware is pinned.
#[test]
fn cpak_without_firmware_reference_values_is_refused_at_start() {
    let dir = TempDir::new().unwrap();
    let (refs, _) = trust_files(dir.path());
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let single = dir.path().join("cpak.pub");
    std::fs::write(&single, realm.cpak_public_sec1()).unwrap();
    let no_sw = dir.path().join("ta-profile-only.json");
    std::fs::write(
        &no_sw,
        anchor_list(
            &realm,
            Some(serde_json::json!({"profile": "http://arm.com/CCA-SSD/1.0.0"})),
        ),
    )
    .unwrap();
    for file in [&single, &no_sw] {
        let (ok, text) =
            run_server_expecting_exit(dir.path(), &["-j", &refs, "--cpak", file.to_str().unwrap()]);
        assert!(!ok, "{text}");
        assert!(text.contains("pins no firmware"), "{text}");
        assert!(text.contains("--cpak-any-firmware"), "{text}");
        let (ok, text) = run_server_expecting_exit(
            dir.path(),
            &[
                "-j",
                &refs,
                "--cpak",
                file.to_str().unwrap(),
                "--cpak-any-firmware",
            ],
        );
        assert!(ok, "{text}");
        assert!(text.contains("firmware NOT pinned"), "{text}");
    }
    let pinned = dir.path().join("ta.json");
    std::fs::write(
        &pinned,
        anchor_list(&realm, Some(realm.platform_reference_values())),
    )
    .unwrap();
    let (ok, text) = run_server_expecting_exit(
        dir.path(),
        &["-j", &refs, "--cpak", pinned.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("firmware pinned by reference values"),
        "{text}"
    );
}

// ---- Revocation and connection age -------------------------------------

impl Harness {
    fn base(&self) -> String {
        format!("https://localhost:{}", self.server.addr.port())
    }

    async fn status(&self, client: &Client, path: &str) -> u16 {
        client
            .http()
            .get(format!("{}{path}", self.base()))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn accepted(&self) -> usize {
        self.outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, o)| matches!(o, AttestationOutcome::Accepted(_)))
            .count()
    }

    /// Rewrites the reference file with `edit` and reloads it.
    fn reload(&self, edit: impl FnOnce(&mut Value)) {
        let mut refs: Value =
            serde_json::from_slice(&std::fs::read(&self.refs_path).unwrap()).unwrap();
        edit(&mut refs);
        std::fs::write(&self.refs_path, serde_json::to_vec(&refs).unwrap()).unwrap();
        self.attestor.reload_references().unwrap();
    }
}

/// A reload that narrows, then removes, the realm's entry applies to its
/// connection that is already open, at its next request, without a new
/// handshake.
#[tokio::test]
async fn reload_revokes_open_connection() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    assert_eq!(h.status(&c, "/v2/app/manifests/latest").await, 200);
    assert_eq!(h.status(&c, "/v2/team/tools/manifests/latest").await, 200);
    assert_eq!(h.accepted(), 1);

    // Narrowed: `app` only.
    h.reload(|r| r["realm"]["applications"] = serde_json::json!(["app"]));
    assert_eq!(h.status(&c, "/v2/app/manifests/latest").await, 200);
    assert_eq!(h.status(&c, "/v2/team/tools/manifests/latest").await, 404);

    // Removed: the only entry now wants another RIM.
    h.reload(|r| set_ref(r, "rim", Value::from("ab".repeat(32))));
    assert_eq!(h.status(&c, "/v2/app/manifests/latest").await, 404);
    let v: Value = c
        .http()
        .get(format!("{}/v2/_catalog", h.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], serde_json::json!([]));
    assert_eq!(h.accepted(), 1, "all on the connection attested once");
}

/// A reload that changes the realm's policy scope applies to its open
/// connection at the next request: held to the server's own scope (which
/// takes nothing unsigned) instead of the test scope, it no longer sees
/// `app`.
#[tokio::test]
async fn reload_changes_the_policy_scope_of_an_open_connection() {
    let policy = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {"test.registry": [{"type": "insecureAcceptAnything"}]}},
    });
    let h = harness_with(
        Platform::OwnCpak,
        |refs| refs["realm"]["policy-scope"] = "test.registry".into(),
        Setup {
            policy: Some(policy),
            ..Setup::default()
        },
    )
    .await;
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    assert_eq!(h.status(&c, "/v2/app/manifests/latest").await, 200);
    h.reload(|r| {
        r["realm"].as_object_mut().unwrap().remove("policy-scope");
    });
    assert_eq!(h.status(&c, "/v2/app/manifests/latest").await, 404);
    assert_eq!(h.accepted(), 1, "all on the connection attested once");
    // And back: the same connection sees it again.
    h.reload(|r| r["realm"]["policy-scope"] = "test.registry".into());
    assert_eq!(h.status(&c, "/v2/app/manifests/latest").await, 200);
    assert_eq!(h.accepted(), 1);
}

/// An attested connection is closed between requests once it is
/// `max_connection_age` old; the next request attests again.
#[tokio::test]
async fn connection_older_than_max_age_is_closed() {
    let h = harness_with(
        Platform::OwnCpak,
        |_| {},
        Setup {
            max_connection_age: Some(Duration::from_millis(500)),
            ..Setup::default()
        },
    )
    .await;
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    assert_eq!(h.status(&c, "/v2/").await, 200);
    assert_eq!(h.status(&c, "/v2/").await, 200);
    assert_eq!(h.accepted(), 1, "one keep-alive connection");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(h.status(&c, "/v2/").await, 200);
    assert_eq!(
        h.accepted(),
        2,
        "the old connection was closed; a new one attested"
    );
}

// ---- Handshakes cannot be starved ---------------------------------------

/// A TLS ClientHello: the first flight of a client that then says nothing.
fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Connects from `source`, sends `first`, then nothing.
async fn stalled(
    server: SocketAddr,
    source: std::net::IpAddr,
    first: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut tcp = socket.connect(server).await.unwrap();
    tcp.write_all(first).await.unwrap();
    tcp
}

/// Whether the server still holds `s` open (what it sent is read and
/// dropped).
fn still_open(s: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.try_read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// Whether the server closes `s` within `wait`.
async fn closed_within(s: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(wait, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// 40 source addresses (127.0.0.2 to .41) each hold as many stalled
/// handshakes as they may (`--max-handshakes-per-address`, 16: 640 in all,
/// more than the 256 verification slots), half of them after a ClientHello
/// (the server answered and waits for their certificate), half silent from
/// the start; the waits outlast the test. A further connection from each
/// address is closed at once; a realm at 127.0.0.1 attests and pulls while
/// every stalled one within the limit is still open.
async fn realm_attests_through_stalled_handshakes(platform: Platform<'_>) {
    let mut options = options(ConnLimits::default());
    options.handshake_timeout = Duration::from_secs(60);
    options.hello_timeout = Duration::from_secs(60);
    options.flight_timeout = Duration::from_secs(60);
    let per_address = options.max_handshakes_per_address;
    assert!(40 * per_address > options.max_handshakes);
    let h = harness_with(
        platform,
        |_| {},
        Setup {
            options,
            ..Setup::default()
        },
    )
    .await;
    let hello = client_hello();
    let sources: Vec<std::net::IpAddr> = (2..42u8)
        .map(|i| std::net::Ipv4Addr::new(127, 0, 0, i).into())
        .collect();
    // One more than allowed from each address: whichever the server took
    // last is closed at once.
    let mut held = Vec::new();
    for source in &sources {
        let mut mine = Vec::new();
        for i in 0..=per_address {
            let first: &[u8] = if i % 2 == 0 { &hello } else { &[] };
            mine.push(stalled(h.server.addr, *source, first).await);
        }
        held.push(mine);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (source, mine) in sources.iter().zip(&mut held) {
        let before = mine.len();
        mine.retain(still_open);
        assert_eq!(
            before - mine.len(),
            1,
            "{source}: {before} connections, one over the limit"
        );
    }
    let held: Vec<_> = held.into_iter().flatten().collect();
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    tokio::time::timeout(Duration::from_secs(8), h.pull(&c, "app:latest"))
        .await
        .expect("the realm's pull waited behind the stalled handshakes")
        .unwrap();
    assert_eq!(h.accepted(), 1);
    let open = held.iter().filter(|s| still_open(s)).count();
    assert_eq!(
        open,
        held.len(),
        "stalled connections were closed: the realm did not get past them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_from_many_addresses_do_not_starve_a_realm_cpak() {
    realm_attests_through_stalled_handshakes(Platform::OwnCpak).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_from_many_addresses_do_not_starve_a_realm_veraison() {
    let mock = MockVeraison::start().await;
    realm_attests_through_stalled_handshakes(Platform::Veraison(&mock)).await;
    assert_eq!(
        mock.counters().evidence_posts,
        1,
        "only the realm reached Veraison"
    );
}

/// A client that answers the server's flight late is dropped after the
/// flight timeout (not the whole handshake timeout), without a verdict.
#[tokio::test]
async fn a_client_silent_after_its_client_hello_is_dropped_after_the_flight_timeout() {
    let mut options = options(ConnLimits::default());
    options.handshake_timeout = Duration::from_secs(60);
    options.flight_timeout = Duration::from_secs(1);
    let h = harness_with(
        Platform::OwnCpak,
        |_| {},
        Setup {
            options,
            ..Setup::default()
        },
    )
    .await;
    let mut s = stalled(h.server.addr, "127.0.0.1".parse().unwrap(), &client_hello()).await;
    let started = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(h.outcomes.lock().unwrap().is_empty());
}

/// IPv6 clients (named here by PROXY headers from the listed balancer,
/// 127.0.0.1) count by /64: two addresses of one /64 fill its share, a
/// third is closed at once, another /64 is not affected.
#[tokio::test]
async fn ipv6_clients_count_by_their_64_prefix() {
    let mut options = options(ConnLimits::default());
    options.max_handshakes_per_address = 2;
    options.hello_timeout = Duration::from_secs(30);
    options.handshake_timeout = Duration::from_secs(30);
    options.proxy_protocol = Some(ir_server::transport::proxy_protocol::ProxySources::new(
        vec!["127.0.0.1/32".parse().unwrap()],
    ));
    let h = harness_with(
        Platform::OwnCpak,
        |_| {},
        Setup {
            options,
            ..Setup::default()
        },
    )
    .await;
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let header = |client: &str| format!("PROXY TCP6 {client} ::1 40000 443\r\n").into_bytes();
    let a = stalled(h.server.addr, lo, &header("2001:db8::1")).await;
    let b = stalled(h.server.addr, lo, &header("2001:db8::2:2")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = stalled(h.server.addr, lo, &header("2001:db8::ffff:3")).await;
    assert!(closed_within(&mut third, Duration::from_secs(5)).await);
    let other = stalled(h.server.addr, lo, &header("2001:db8:0:1::1")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(still_open(&a) && still_open(&b) && still_open(&other));
}

/// Opens an RA-TLS connection from `source` with `realm`'s tokens, and
/// holds it until the server closes it.
async fn hold_ratls_connection(
    server: SocketAddr,
    source: std::net::IpAddr,
    ca_pem: Vec<u8>,
    realm: EmulatedRealm,
) {
    let config =
        ir_client::ratls::client_config(Some(&ca_pem), TokenSource::emulated(realm)).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let tcp = socket.connect(server).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    if let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let _ = tls.read(&mut buf).await;
    }
}

/// Tokens only Veraison can judge (here: an attacker's realm with the
/// public reference measurements and a platform of its own), sent by one
/// address faster than Veraison answers, take at most that address's
/// handshake slots: a genuine realm elsewhere still gets a Veraison slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_do_not_starve_veraison_slots() {
    let mock = MockVeraison::start().await;
    let mut options = options(ConnLimits::default());
    options.max_handshakes_per_address = 1;
    let h = Arc::new(
        harness_with(
            Platform::Veraison(&mock),
            |_| {},
            Setup {
                options,
                max_attestations: 2,
                veraison_timeout: Duration::from_secs(3),
                ..Setup::default()
            },
        )
        .await,
    );
    mock.knobs().latency = Duration::from_millis(1000);
    let attacker = EmulatedRealm::generate(Measurements::default()).unwrap();
    let source: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut flood = Vec::new();
    for _ in 0..30 {
        flood.push(tokio::spawn(hold_ratls_connection(
            h.server.addr,
            source,
            h.ca.pem.clone().into_bytes(),
            attacker.clone(),
        )));
    }
    // The flood is queued before the realm arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = h.client(TokenSource::emulated(h.realm.clone()));
    h.pull(&c, "app:latest").await.unwrap();
    assert!(
        h.outcomes
            .lock()
            .unwrap()
            .iter()
            .any(|(peer, o)| peer.ip().is_loopback()
                && peer.ip() != source
                && matches!(o, AttestationOutcome::Accepted(_))),
        "the genuine realm attested"
    );
    for f in flood {
        f.abort();
    }
}

/// A replayed token whose realm signature is also broken is refused for
/// the binding: the cheap check runs first, no signature is checked.
#[tokio::test]
async fn binding_checked_before_signature() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let realm = h.realm.clone();
    let forged = TokenSource::custom(move |_req| {
        // Bound to another connection's challenge, and tampered.
        let mut token = realm.token(&[7u8; 64]).map_err(|e| e.to_string())?;
        let last = token.len() - 1;
        token[last] ^= 0x01;
        Ok(token)
    });
    assert_eq!(h.refused(&h.client(forged)).await, "challenge_mismatch");
}

// ---- Bounded logs -------------------------------------------------------

/// A log writer that keeps what is written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A token whose collection map has a key that is an array of 60,000
/// integers: the refusal's log line and reported detail stay short.
#[tokio::test]
async fn huge_cbor_map_key_log_line_is_bounded() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);

    let h = harness(Platform::OwnCpak, |_| {}).await;
    let hostile = TokenSource::custom(|_req| {
        // tag 399, map of 2: [0; 60000] => h'', 44241 => h''
        let mut t = vec![0xd9, 0x01, 0x8f, 0xa2, 0x99, 0xea, 0x60];
        t.extend(std::iter::repeat_n(0u8, 60_000));
        t.extend([0x40, 0x19, 0xac, 0xd1, 0x40]);
        Ok(t)
    });
    assert_eq!(h.refused(&h.client(hostile)).await, "token_parse");
    match h.last_outcome().await {
        AttestationOutcome::Refused { detail, .. } => {
            assert!(detail.len() <= 512, "detail of {} bytes", detail.len())
        }
        o => panic!("{o:?}"),
    }
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).to_string();
    let refusals: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("connection refused"))
        .collect();
    assert!(!refusals.is_empty(), "no refusal logged: {text}");
    for line in refusals {
        assert!(line.len() <= 600, "a log line of {} bytes", line.len());
    }
}

// ---- TLS-level properties -----------------------------------------------

/// A client session store that records what the server handed out.
#[derive(Debug)]
struct RecordingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    tls13_tickets: std::sync::atomic::AtomicUsize,
    tls12_sessions: std::sync::atomic::AtomicUsize,
}

impl RecordingStore {
    fn new() -> Arc<Self> {
        Arc::new(RecordingStore {
            inner: rustls::client::ClientSessionMemoryCache::new(16),
            tls13_tickets: Default::default(),
            tls12_sessions: Default::default(),
        })
    }
}

impl rustls::client::ClientSessionStore for RecordingStore {
    fn set_kx_hint(&self, name: rustls::pki_types::ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.tls12_sessions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &rustls::pki_types::ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tls13_tickets
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.insert_tls13_ticket(name, value)
    }
    fn take_tls13_ticket(
        &self,
        name: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// A rustls client for `versions` that asks for resumption (and 0-RTT)
/// with `store`, presenting certificates from `resolver`.
fn resuming_client(
    h: &Harness,
    versions: &[&'static rustls::SupportedProtocolVersion],
    store: Arc<RecordingStore>,
    resolver: Arc<dyn rustls::client::ResolvesClientCert>,
) -> Arc<rustls::ClientConfig> {
    let roots = ir_client::ratls::root_store(h.ca.pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(ir_client::ratls::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(resolver);
    config.resumption = rustls::client::Resumption::store(store);
    config.enable_early_data = true;
    Arc::new(config)
}

/// One HTTP/1.1 request over a fresh RA-TLS connection with `config`;
/// returns how the handshake went, and the response (empty if refused).
async fn one_request(
    h: &Harness,
    config: Arc<rustls::ClientConfig>,
) -> (Option<rustls::HandshakeKind>, bool, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(h.server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    else {
        return (None, false, String::new());
    };
    let (kind, early) = {
        let c = tls.get_ref().1;
        (c.handshake_kind(), c.is_early_data_accepted())
    };
    let _ = tls
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    (kind, early, String::from_utf8_lossy(&response).to_string())
}

fn resolver(h: &Harness) -> Arc<ir_client::ratls::CertResolver> {
    Arc::new(ir_client::ratls::CertResolver::new(
        TokenSource::emulated(h.realm.clone()),
        RaTlsOptions::default(),
    ))
}

/// With TLS 1.2 allowed, a client that offers its session back gets a full
/// handshake, and attests again.
#[tokio::test]
async fn tls12_session_not_resumed() {
    let h = harness_with(
        Platform::OwnCpak,
        |_| {},
        Setup {
            allow_tls12: true,
            ..Setup::default()
        },
    )
    .await;
    let store = RecordingStore::new();
    let config = resuming_client(&h, &[&rustls::version::TLS12], store.clone(), resolver(&h));
    for round in 1..=2 {
        let (kind, _, response) = one_request(&h, config.clone()).await;
        assert_eq!(kind, Some(rustls::HandshakeKind::Full), "round {round}");
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "round {round}: {response}"
        );
        assert_eq!(h.accepted(), round, "every connection attests");
    }
}

/// Under TLS 1.3 the server sends no session tickets, so nothing can be
/// resumed, and 0-RTT data is never accepted.
#[tokio::test]
async fn tls13_no_tickets_and_no_early_data() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let store = RecordingStore::new();
    let config = resuming_client(&h, &[&rustls::version::TLS13], store.clone(), resolver(&h));
    for round in 1..=2 {
        let (kind, early, response) = one_request(&h, config.clone()).await;
        assert_eq!(kind, Some(rustls::HandshakeKind::Full), "round {round}");
        assert!(!early, "round {round}: early data accepted");
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "round {round}: {response}"
        );
    }
    assert_eq!(
        store
            .tls13_tickets
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the server sent session tickets"
    );
    assert_eq!(h.accepted(), 2);
}

/// Presents a genuine RA-TLS certificate but signs the handshake with
/// another key.
#[derive(Debug)]
struct ForeignSigner {
    genuine: Arc<ir_client::ratls::CertResolver>,
    foreign: Arc<dyn rustls::sign::SigningKey>,
}

impl rustls::client::ResolvesClientCert for ForeignSigner {
    fn resolve(
        &self,
        hints: &[&[u8]],
        schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let genuine = self.genuine.resolve(hints, schemes)?;
        Some(Arc::new(rustls::sign::CertifiedKey::new(
            genuine.cert.clone(),
            self.foreign.clone(),
        )))
    }
    fn has_certs(&self) -> bool {
        true
    }
}

fn p256_signing_key() -> (rcgen::KeyPair, Arc<dyn rustls::sign::SigningKey>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = ir_client::ratls::provider()
        .key_provider
        .load_private_key(der)
        .unwrap();
    (key, signing)
}

/// A CertificateVerify made with a key other than the certificate's is
/// refused, and the realm is never accepted.
#[tokio::test]
async fn certificate_verify_by_foreign_key_is_refused() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let (_, foreign) = p256_signing_key();
    let resolver = Arc::new(ForeignSigner {
        genuine: resolver(&h),
        foreign,
    });
    let config = resuming_client(
        &h,
        &[&rustls::version::TLS13],
        RecordingStore::new(),
        resolver,
    );
    let (_, _, response) = one_request(&h, config).await;
    assert!(response.is_empty(), "served: {response}");
    match h.last_outcome().await {
        AttestationOutcome::Refused { reason, detail } => {
            assert_eq!(reason, "handshake_signature", "{detail}")
        }
        o => panic!("expected a refusal, got {o:?}"),
    }
    assert_eq!(h.accepted(), 0);
}

/// Presents a certificate with the token extension twice (each a genuine,
/// bound token).
#[derive(Debug)]
struct DuplicateExtension {
    realm: EmulatedRealm,
}

impl rustls::client::ResolvesClientCert for DuplicateExtension {
    fn resolve(
        &self,
        hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let challenge = ir_client::ratls::challenge_from_hints(hints).ok()?;
        let (key, signing) = p256_signing_key();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let token = self
            .realm
            .token(&ir_attest::expected_realm_challenge(&challenge, &spki))
            .ok()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
        for _ in 0..2 {
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &ir_attest::RATLS_TOKEN_EXTENSION_ARCS,
                    token.clone(),
                ));
        }
        let cert = params.self_signed(&key).ok()?;
        Some(Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert.der().clone()],
            signing,
        )))
    }
    fn has_certs(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn duplicate_token_extension_is_refused() {
    let h = harness(Platform::OwnCpak, |_| {}).await;
    let resolver = Arc::new(DuplicateExtension {
        realm: h.realm.clone(),
    });
    let config = resuming_client(
        &h,
        &[&rustls::version::TLS13],
        RecordingStore::new(),
        resolver,
    );
    let (_, _, response) = one_request(&h, config).await;
    assert!(response.is_empty(), "served: {response}");
    match h.last_outcome().await {
        AttestationOutcome::Refused { reason, detail } => {
            assert_eq!(reason, "bad_certificate", "{detail}");
            assert!(
                detail.contains("more than once") || detail.contains("uplicate"),
                "{detail}"
            );
        }
        o => panic!("expected a refusal, got {o:?}"),
    }
    assert_eq!(h.accepted(), 0);
}

/// With one Veraison slot taken by a slow appraisal, a second realm waits
/// for it only while an appraisal could still end within its handshake
/// timeout, then is refused with a reason (not cut off silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn veraison_slot_wait_fits_in_the_handshake_timeout() {
    let mock = MockVeraison::start().await;
    let mut options = options(ConnLimits::default());
    options.handshake_timeout = Duration::from_secs(4);
    let h = Arc::new(
        harness_with(
            Platform::Veraison(&mock),
            |_| {},
            Setup {
                options,
                max_attestations: 1,
                veraison_timeout: Duration::from_secs(3),
                ..Setup::default()
            },
        )
        .await,
    );
    mock.knobs().latency = Duration::from_millis(2500);
    let first = {
        let h = h.clone();
        tokio::spawn(async move {
            let c = h.client(TokenSource::emulated(h.realm.clone()));
            h.pull(&c, "app:latest").await.map(|_| ())
        })
    };
    // The first realm holds the only Veraison slot once the mock has seen
    // its first request (waiting on that, not on the clock, so a slow
    // machine cannot let the second realm take the slot first).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while mock.counters().requests == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first realm never reached Veraison"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = h.client(TokenSource::emulated(h.realm.clone()));
    assert!(h.pull(&second, "app:latest").await.is_err());
    first.await.unwrap().unwrap();
    assert!(
        h.outcomes.lock().unwrap().iter().any(|(_, o)| matches!(
            o,
            AttestationOutcome::Refused {
                reason: "veraison_busy",
                ..
            }
        )),
        "{:?}",
        h.outcomes.lock().unwrap()
    );
}
