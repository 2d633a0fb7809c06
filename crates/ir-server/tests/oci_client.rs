//! The Rust `oci-client` crate pulls from ir-server as a library-level
//! client: an image by tag, the same by digest, a multi-arch index, and the
//! tag list, with every digest checked.

use crate::util::TestServer;
use ir_oci::{Algorithm, Digest};
use ir_testkit::Root;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

#[tokio::test]
async fn oci_client_pulls_images_indexes_and_tags() {
    let root = Root::new();
    let app = root.layout("team/app");
    let image = app
        .image_with_layers(&[b"first layer", b"second layer"])
        .manifest;
    let other = app.image(b"arm64 layer").manifest;
    let index = app.index(&[image.clone(), other]);
    app.set_index(&[image.tagged("v1"), index.tagged("multi")]);
    let server = TestServer::start(root.path()).await;
    let host = server.addr.to_string();

    let c = client();
    let reference: Reference = format!("{host}/team/app:v1").parse().unwrap();
    let accepted = vec![oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE];
    let image_data = c
        .pull(&reference, &RegistryAuth::Anonymous, accepted.clone())
        .await
        .unwrap();
    // oci-client fetches layers concurrently and returns them in the order
    // they arrived, not in the manifest's order.
    let mut layers: Vec<&[u8]> = image_data.layers.iter().map(|l| l.data.as_ref()).collect();
    layers.sort();
    assert_eq!(layers, [&b"first layer"[..], &b"second layer"[..]]);
    assert_eq!(image_data.digest.as_deref(), image["digest"].as_str());
    for layer in &image_data.layers {
        let d = Digest::of_bytes(Algorithm::Sha256, &layer.data);
        assert!(image_data
            .manifest
            .as_ref()
            .unwrap()
            .layers
            .iter()
            .any(|l| l.digest == *d.text()));
    }

    let by_digest: Reference = format!("{host}/team/app@{}", image["digest"].as_str().unwrap())
        .parse()
        .unwrap();
    let (manifest, digest) = c
        .pull_manifest(&by_digest, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(digest, image["digest"].as_str().unwrap());
    assert!(matches!(manifest, OciManifest::Image(_)));

    let multi: Reference = format!("{host}/team/app:multi").parse().unwrap();
    let (raw, digest) = c
        .pull_manifest_raw(
            &multi,
            &RegistryAuth::Anonymous,
            &["application/vnd.oci.image.index.v1+json"],
        )
        .await
        .unwrap();
    assert_eq!(digest, index["digest"].as_str().unwrap());
    assert_eq!(&*Digest::of_bytes(Algorithm::Sha256, &raw).text(), digest);

    let tags = c
        .list_tags(&multi, &RegistryAuth::Anonymous, None, None)
        .await
        .unwrap();
    assert_eq!(tags.tags, vec!["multi".to_string(), "v1".to_string()]);
}
