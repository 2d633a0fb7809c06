//! RA-TLS pulls against an RA-TLS server written in this test (not
//! ir-server's): the challenge travels as the certificate-authority hint,
//! and the server checks the presented token with
//! `ir_attest::verify::verify_local` (session binding, reference values,
//! platform key).

use std::sync::Arc;

use crate::util::{fixture, pki, serve, Pki, TestRaTls};
use ir_attest::platform::PlatformKeys;
use ir_attest::{EmulatedRealm, HashAlg, Measurements, ReferenceSet};
use ir_client::ratls::{CertResolver, KeyAlg, RaTlsOptions, TokenSource};
use ir_client::{Client, ClientOptions, Error, Transport};

fn trusting(pki: &Pki, realm: &EmulatedRealm) -> Arc<TestRaTls> {
    let refs =
        ReferenceSet::from_json(realm.reference_values_json("demo", None).as_bytes(), "test")
            .unwrap();
    let keys = PlatformKeys::from_bytes(&realm.cpak_public_sec1()).unwrap();
    TestRaTls::new(pki, refs, keys)
}

fn client(pki: &Pki, source: TokenSource, options: RaTlsOptions) -> Client {
    Client::with_options(
        Transport::RaTls {
            ca: Some(pki.ca_pem.clone().into_bytes()),
            token_source: source,
        },
        ClientOptions {
            http: ir_client::HttpOptions {
                ra_tls: options,
                ..Default::default()
            },
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn the_token_is_bound_to_each_sessions_challenge() {
    let f = fixture();
    let pki = pki();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let server_side = trusting(&pki, &realm);
    let server = serve(f.root.path(), server_side.clone()).await;
    let url = format!("ra-tls://localhost:{}/app:latest", server.port());

    for key_alg in [KeyAlg::P256, KeyAlg::P384] {
        let out = tempfile::TempDir::new().unwrap();
        let c = client(
            &pki,
            TokenSource::emulated(realm.clone()),
            RaTlsOptions {
                key_alg,
                ..RaTlsOptions::default()
            },
        );
        let r = c.pull(&url, out.path()).await.unwrap();
        assert_eq!(r.digest.to_string(), f.image.manifest.digest_str());

        // The server saw the token it asked for: bound to its challenge
        // and the presented key.
        let session = c.resolver().unwrap().last_session().unwrap();
        let outcomes = server_side.outcomes();
        let mine = outcomes
            .iter()
            .find(|o| o.challenge == session.challenge)
            .expect("the client answered a challenge the server sent");
        assert!(
            mine.result
                .as_ref()
                .is_ok_and(|realm| realm.starts_with("demo ")),
            "{mine:?}"
        );
        assert_eq!(
            session.realm_challenge,
            ir_attest::expected_realm_challenge(&session.challenge, &session.spki_der)
        );
        let token = ir_attest::CcaToken::parse(&session.token).unwrap();
        assert_eq!(token.realm.claims.challenge, session.realm_challenge);
    }
    // Every connection attested, and every attestation passed.
    assert!(server_side.outcomes().iter().all(|o| o.result.is_ok()));
    server.stop().await;
}

#[tokio::test]
async fn a_replayed_token_is_refused() {
    let f = fixture();
    let pki = pki();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let server_side = trusting(&pki, &realm);
    let server = serve(f.root.path(), server_side.clone()).await;
    let url = format!("ra-tls://localhost:{}/app:latest", server.port());

    // Record a good token from one session...
    let resolver = Arc::new(CertResolver::new(
        TokenSource::emulated(realm),
        RaTlsOptions::default(),
    ));
    let config =
        ir_client::ratls::client_config_with(Some(pki.ca_pem.as_bytes()), resolver.clone())
            .unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap();
    let resp = http
        .get(format!("https://localhost:{}/v2/", server.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let recorded = resolver.last_session().unwrap().token;

    // ...and send it as a fixed token (as the islet client does).
    let out = tempfile::TempDir::new().unwrap();
    let c = client(
        &pki,
        TokenSource::Fixed(Arc::new(recorded)),
        RaTlsOptions::default(),
    );
    let before = server_side.outcomes().len();
    let e = c.pull(&url, out.path()).await.unwrap_err();
    assert!(matches!(e, Error::AttestationRefused { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("the server refused this realm's attestation"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 5);
    // Refused once, never retried: the same token would be refused again.
    assert_eq!(server_side.outcomes().len(), before + 1);
    let last = server_side.outcomes().pop().unwrap();
    assert!(
        last.result
            .as_ref()
            .unwrap_err()
            .contains("challenge mismatch"),
        "{last:?}"
    );
    assert!(!out.path().join("index.json").exists());
    server.stop().await;
}

#[tokio::test]
async fn wrong_realms_platforms_and_certificates_are_refused() {
    let f = fixture();
    let pki = pki();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let server_side = trusting(&pki, &realm);
    let server = serve(f.root.path(), server_side.clone()).await;
    let url = format!("ra-tls://localhost:{}/app:latest", server.port());
    let refused = |why: &'static str, source: TokenSource, options: RaTlsOptions| {
        let (pki, url, server_side) = (&pki, url.clone(), server_side.clone());
        async move {
            let out = tempfile::TempDir::new().unwrap();
            let before = server_side.outcomes().len();
            let e = client(pki, source, options)
                .pull(&url, out.path())
                .await
                .unwrap_err();
            assert!(matches!(e, Error::AttestationRefused { .. }), "{why}: {e}");
            assert_eq!(server_side.outcomes().len(), before + 1, "{why}: retried");
            let last = server_side.outcomes().pop().unwrap();
            let reason = last.result.unwrap_err();
            assert!(
                reason.contains(why),
                "expected {why:?}, server said {reason:?}"
            );
        }
    };

    // Another RIM.
    let other_rim = Measurements {
        rim: HashAlg::Sha256.digest(b"another realm"),
        ..Measurements::default()
    };
    let pem = |r: &EmulatedRealm| (r.rak_pem().unwrap(), r.cpak_pem().unwrap());
    let (rak, cpak) = pem(&realm);
    let wrong_rim = EmulatedRealm::from_pem(&rak, &cpak, other_rim).unwrap();
    refused(
        "RIM mismatch",
        TokenSource::emulated(wrong_rim),
        RaTlsOptions::default(),
    )
    .await;

    // Another platform (CPAK not trusted), same measurements.
    let stranger = EmulatedRealm::generate(Measurements::default()).unwrap();
    refused(
        "platform",
        TokenSource::emulated(stranger),
        RaTlsOptions::default(),
    )
    .await;

    // A certificate without the token extension.
    refused(
        "missing extension",
        TokenSource::emulated(realm.clone()),
        RaTlsOptions {
            omit_token_extension: true,
            ..RaTlsOptions::default()
        },
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_failing_token_source_is_the_reported_reason() {
    let f = fixture();
    let pki = pki();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let server = serve(f.root.path(), trusting(&pki, &realm)).await;
    let out = tempfile::TempDir::new().unwrap();
    let c = client(
        &pki,
        TokenSource::custom(|_| Err("no realm firmware here".into())),
        RaTlsOptions::default(),
    );
    let e = c
        .pull(
            &format!("ra-tls://localhost:{}/app:latest", server.port()),
            out.path(),
        )
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("token source: no realm firmware here"),
        "{text}"
    );
    server.stop().await;
}
