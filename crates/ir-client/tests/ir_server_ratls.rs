//! End to end with ir-server's own RA-TLS transport: `ir-client` with an
//! emulated realm, the server trusting the realm through the files
//! `ir_client::emulated::export` writes, its platform judged locally (CPAK)
//! or by the mock Veraison of ir-testkit.

use std::sync::Arc;

use crate::util::{fixture, pki, serve, Pki};
use ir_attest::attestor::{Attestor, PlatformCheck};
use ir_attest::platform::PlatformKeys;
use ir_attest::veraison::{VeraisonClient, VeraisonConfig};
use ir_attest::{EarVerifier, EmulatedRealm, Measurements};
use ir_client::emulated::{export, Export};
use ir_client::{Client, Error, TokenSource, Transport};
use ir_server::transport::ratls::RaTls;
use ir_testkit::veraison_mock::{MockVeraison, Status};

struct Trust {
    dir: tempfile::TempDir,
    realm: EmulatedRealm,
}

/// An emulated realm allowed only `app`, and the files a server needs.
fn trust() -> Trust {
    let dir = tempfile::TempDir::new().unwrap();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    export(
        &realm,
        &Export {
            cpak: Some(dir.path().join("cpak.pub")),
            reference_values: Some(dir.path().join("realm.json")),
            name: "demo".into(),
            applications: vec!["app".into()],
            ..Export::default()
        },
    )
    .unwrap();
    Trust { dir, realm }
}

fn ratls(pki: &Pki, t: &Trust, platform: PlatformCheck) -> Arc<RaTls> {
    let attestor = Attestor::new(&t.dir.path().join("realm.json"), platform, 8).unwrap();
    let certs =
        Arc::new(ir_server::cert_store::CertStore::load(&pki.cert_file, &pki.key_file).unwrap());
    Arc::new(RaTls::new(certs, Arc::new(attestor), false))
}

fn client(pki: &Pki, realm: &EmulatedRealm) -> Client {
    Client::new(Transport::RaTls {
        ca: Some(pki.ca_pem.clone().into_bytes()),
        token_source: TokenSource::emulated(realm.clone()),
    })
    .unwrap()
}

#[tokio::test]
async fn local_cpak_mode_accepts_the_realm_for_its_applications_only() {
    let f = fixture();
    let pki = pki();
    let t = trust();
    let keys = PlatformKeys::load(&t.dir.path().join("cpak.pub")).unwrap();
    let server = serve(f.root.path(), ratls(&pki, &t, PlatformCheck::Local(keys))).await;
    let c = client(&pki, &t.realm);

    let out = tempfile::TempDir::new().unwrap();
    let r = c
        .pull(
            &format!("ra-tls://localhost:{}/app:latest", server.port()),
            out.path(),
        )
        .await
        .unwrap();
    assert_eq!(r.digest.to_string(), f.image.manifest.digest_str());

    let e = c
        .pull(
            &format!("ra-tls://localhost:{}/team/tools:1.0", server.port()),
            out.path(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Status { status: 404, .. }), "{e}");

    // A realm on an untrusted platform gets nothing.
    let stranger = EmulatedRealm::generate(Measurements::default()).unwrap();
    let e = client(&pki, &stranger)
        .pull(
            &format!("ra-tls://localhost:{}/app:latest", server.port()),
            tempfile::TempDir::new().unwrap().path(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AttestationRefused { .. }), "{e}");
    server.stop().await;
}

#[tokio::test]
async fn veraison_mode_with_the_mock() {
    let f = fixture();
    let pki = pki();
    let t = trust();
    let mock = MockVeraison::start().await;
    let platform = PlatformCheck::Veraison {
        client: VeraisonClient::new(VeraisonConfig::new(mock.url())).unwrap(),
        ear: EarVerifier::from_jwk_json(mock.public_jwk_json().as_bytes()).unwrap(),
    };
    let server = serve(f.root.path(), ratls(&pki, &t, platform)).await;
    let url = format!("ra-tls://localhost:{}/app:latest", server.port());

    let c = client(&pki, &t.realm);
    let out = tempfile::TempDir::new().unwrap();
    c.pull(&url, out.path()).await.unwrap();
    let counters = mock.counters();
    assert!(counters.evidence_posts >= 1);
    assert_eq!(counters.sessions_created, counters.sessions_deleted);
    // Veraison was sent exactly the token the client presented.
    assert_eq!(
        mock.last_evidence().unwrap(),
        c.resolver().unwrap().last_session().unwrap().token
    );

    mock.knobs()
        .set_status("CCA_SSD_PLATFORM", Status::Contraindicated);
    let e = client(&pki, &t.realm)
        .pull(&url, tempfile::TempDir::new().unwrap().path())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AttestationRefused { .. }), "{e}");
    server.stop().await;
}
