//! The pull API against the real server over real HTTP: every endpoint,
//! header, status and error the distribution spec and our issue ask for.

use crate::util::{client, error_code, h2c_client, header, TestServer};
use ir_oci::Algorithm;
use ir_testkit::{Alg, Desc, Root};
use serde_json::Value;

struct Fixture {
    _root: Root,
    server: TestServer,
    image: Desc,
    small_layer: Desc,
    big_layer: Desc,
    big_bytes: Vec<u8>,
    sbom: Desc,
    sig: Desc,
    index: Desc,
    sha512_image: Desc,
}

fn big_content() -> Vec<u8> {
    (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

async fn fixture() -> Fixture {
    let root = Root::new();
    let hello = root.layout("hello");
    let small_layer = hello.blob(ir_testkit::LAYER_GZIP, b"small layer bytes");
    let big_bytes = big_content();
    let big_layer = hello.blob(ir_testkit::LAYER_GZIP, &big_bytes);
    let config = hello.json(
        ir_testkit::CONFIG,
        &serde_json::json!({"os": "linux", "architecture": "amd64"}),
    );
    let image = hello.manifest(&config, &[small_layer.clone(), big_layer.clone()]);
    let artifact = |artifact_type: &str, payload: &[u8]| {
        hello.artifact(
            artifact_type,
            &[hello.blob("application/json", payload)],
            serde_json::json!({"subject": image.0, "annotations": {"org.example.kind": artifact_type}}),
        )
    };
    let sbom = artifact("application/vnd.example.sbom.v1+json", br#"{"sbom":true}"#);
    let sig = artifact("application/vnd.example.sig.v1", b"signature");
    hello.set_index(&[
        image.tagged("latest"),
        image.tagged("1.0"),
        sbom.clone(),
        sig.clone(),
    ]);

    let team = root.layout("team/app");
    let a = team.image(b"amd64 layer").manifest;
    let b = team.image(b"arm64 layer").manifest;
    let index = team.index(&[a, b]);
    team.set_index(&["b", "a", "d", "c", "B"].map(|t| index.tagged(t)));

    let s512 = root.layout_with("s512", Alg::Sha512);
    let sha512_image = s512.image(b"sha512 layer").manifest;
    s512.set_index(&[sha512_image.tagged("latest")]);

    let server = TestServer::start(root.path()).await;
    Fixture {
        _root: root,
        server,
        image,
        small_layer,
        big_layer,
        big_bytes,
        sbom,
        sig,
        index,
        sha512_image,
    }
}

fn digest(d: &Value) -> &str {
    d["digest"].as_str().unwrap()
}

#[tokio::test]
async fn base_endpoint_get_and_head() {
    let f = fixture().await;
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = client()
            .request(method.clone(), f.server.url("/v2/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "docker-distribution-api-version"),
            "registry/2.0"
        );
        assert_eq!(header(&r, "content-length"), "2");
        let body = r.text().await.unwrap();
        assert_eq!(
            body,
            if method == reqwest::Method::GET {
                "{}"
            } else {
                ""
            }
        );
    }
}

#[tokio::test]
async fn manifest_by_tag_and_digest_is_exact() {
    let f = fixture().await;
    let stored = std::fs::read(
        f.server
            .state
            .catalog
            .load()
            .registry()
            .applications
            .values()
            .next()
            .unwrap()
            .dir
            .join(ir_oci::Digest::parse(digest(&f.image)).unwrap().blob_path()),
    )
    .unwrap();
    for reference in ["latest", "1.0", digest(&f.image)] {
        let r = client()
            .get(f.server.url(&format!("/v2/hello/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{reference}");
        assert_eq!(
            header(&r, "content-type"),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(header(&r, "docker-content-digest"), digest(&f.image));
        assert_eq!(header(&r, "etag"), format!("\"{}\"", digest(&f.image)));
        assert_eq!(header(&r, "content-length"), stored.len().to_string());
        assert_eq!(r.bytes().await.unwrap().as_ref(), stored.as_slice());
    }
}

#[tokio::test]
async fn manifest_head_matches_get_without_body() {
    let f = fixture().await;
    let url = f.server.url("/v2/hello/manifests/latest");
    let get = client().get(&url).send().await.unwrap();
    let head = client().head(&url).send().await.unwrap();
    assert_eq!(get.status(), head.status());
    for h in [
        "content-type",
        "content-length",
        "docker-content-digest",
        "etag",
    ] {
        assert_eq!(header(&get, h), header(&head, h), "{h}");
    }
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn manifest_if_none_match_gives_304() {
    let f = fixture().await;
    let etag = format!("\"{}\"", digest(&f.image));
    for value in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".into(),
    ] {
        let r = client()
            .get(f.server.url("/v2/hello/manifests/latest"))
            .header("if-none-match", value.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304, "{value}");
        assert_eq!(header(&r, "etag"), etag);
    }
    let r = client()
        .get(f.server.url("/v2/hello/manifests/latest"))
        .header("if-none-match", "\"sha256:nope\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn manifest_served_whatever_the_accept_header() {
    let f = fixture().await;
    for accept in [
        "*/*",
        "application/vnd.docker.distribution.manifest.v2+json",
        "text/plain",
    ] {
        let r = client()
            .get(f.server.url("/v2/hello/manifests/latest"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "content-type"),
            "application/vnd.oci.image.manifest.v1+json"
        );
    }
}

#[tokio::test]
async fn index_manifest_has_index_media_type() {
    let f = fixture().await;
    let r = client()
        .get(f.server.url("/v2/team/app/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(header(&r, "docker-content-digest"), digest(&f.index));
}

#[tokio::test]
async fn blob_get_has_every_header_and_exact_bytes() {
    let f = fixture().await;
    for (d, expected) in [
        (&f.small_layer, b"small layer bytes".to_vec()),
        (&f.big_layer, f.big_bytes.clone()),
    ] {
        let r = client()
            .get(f.server.url(&format!("/v2/hello/blobs/{}", digest(d))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "application/octet-stream");
        assert_eq!(header(&r, "docker-content-digest"), digest(d));
        assert_eq!(header(&r, "etag"), format!("\"{}\"", digest(d)));
        assert_eq!(header(&r, "accept-ranges"), "bytes");
        assert!(header(&r, "cache-control").contains("immutable"));
        assert_eq!(header(&r, "content-length"), expected.len().to_string());
        assert_eq!(r.bytes().await.unwrap().as_ref(), expected.as_slice());
    }
}

#[tokio::test]
async fn blob_head_matches_get() {
    let f = fixture().await;
    let url = f
        .server
        .url(&format!("/v2/hello/blobs/{}", digest(&f.big_layer)));
    let get = client().get(&url).send().await.unwrap();
    let head = client().head(&url).send().await.unwrap();
    assert_eq!(get.status(), head.status());
    for h in [
        "content-type",
        "content-length",
        "docker-content-digest",
        "etag",
        "accept-ranges",
        "cache-control",
    ] {
        assert_eq!(header(&get, h), header(&head, h), "{h}");
    }
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn manifests_and_configs_are_blobs_too() {
    let f = fixture().await;
    let r = client()
        .get(
            f.server
                .url(&format!("/v2/hello/blobs/{}", digest(&f.image))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/octet-stream");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(
        &*ir_oci::Digest::of_bytes(Algorithm::Sha256, &bytes).text(),
        digest(&f.image)
    );
}

#[tokio::test]
async fn sha512_content_keeps_its_digest() {
    let f = fixture().await;
    let r = client()
        .get(f.server.url("/v2/s512/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), digest(&f.sha512_image));
    assert!(digest(&f.sha512_image).starts_with("sha512:"));
    let m: Value = r.json().await.unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let r = client()
        .get(f.server.url(&format!("/v2/s512/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), layer);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"sha512 layer");
}

async fn ranged(f: &Fixture, range: &str) -> reqwest::Response {
    client()
        .get(
            f.server
                .url(&format!("/v2/hello/blobs/{}", digest(&f.big_layer))),
        )
        .header("range", range)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn range_requests() {
    let f = fixture().await;
    let size = f.big_bytes.len();
    let cases = [
        ("bytes=0-9", 0, 9),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=-100", size - 100, size - 1),
        ("bytes=300000-400000", 300_000, 400_000),
    ];
    for (range, a, b) in cases {
        let r = ranged(&f, range).await;
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(header(&r, "content-range"), format!("bytes {a}-{b}/{size}"));
        assert_eq!(header(&r, "content-length"), (b - a + 1).to_string());
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            &f.big_bytes[a..=b],
            "{range}"
        );
    }
}

#[tokio::test]
async fn unsatisfiable_range_gives_416() {
    let f = fixture().await;
    let size = f.big_bytes.len();
    for range in [format!("bytes={size}-"), "bytes=-0".to_string()] {
        let r = ranged(&f, &range).await;
        assert_eq!(r.status(), 416);
        assert_eq!(header(&r, "content-range"), format!("bytes */{size}"));
        assert_eq!(error_code(r).await, "RANGE_NOT_SATISFIABLE");
    }
}

#[tokio::test]
async fn multiple_or_malformed_ranges_give_the_whole_blob() {
    let f = fixture().await;
    for range in ["bytes=0-1,5-6", "bytes=x-y", "lines=1-2"] {
        let r = ranged(&f, range).await;
        assert_eq!(r.status(), 200, "{range}");
        assert_eq!(r.bytes().await.unwrap().len(), f.big_bytes.len());
    }
}

#[tokio::test]
async fn if_range_honours_only_a_matching_etag() {
    let f = fixture().await;
    let url = f
        .server
        .url(&format!("/v2/hello/blobs/{}", digest(&f.big_layer)));
    let etag = format!("\"{}\"", digest(&f.big_layer));
    let r = client()
        .get(&url)
        .header("range", "bytes=0-0")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let r = client()
        .get(&url)
        .header("range", "bytes=0-0")
        .header("if-range", "\"sha256:other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(&url)
        .header("range", "bytes=0-0")
        .header("if-range", "Fri, 27 Nov 2026 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
}

#[tokio::test]
async fn ranges_on_in_memory_manifests() {
    let f = fixture().await;
    let r = client()
        .get(
            f.server
                .url(&format!("/v2/hello/blobs/{}", digest(&f.image))),
        )
        .header("range", "bytes=0-0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"{");
}

#[tokio::test]
async fn tags_list_sorted_and_paginated() {
    let f = fixture().await;
    let r = client()
        .get(f.server.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"name": "team/app", "tags": ["B", "a", "b", "c", "d"]})
    );

    let r = client()
        .get(f.server.url("/v2/team/app/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/team/app/tags/list?n=2&last=a>; rel=\"next\""
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["B", "a"]));

    let r = client()
        .get(f.server.url("/v2/team/app/tags/list?n=2&last=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/team/app/tags/list?n=2&last=c>; rel=\"next\""
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["b", "c"]));

    let r = client()
        .get(f.server.url("/v2/team/app/tags/list?n=2&last=c"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["d"]));

    let r = client()
        .get(f.server.url("/v2/team/app/tags/list?n=0"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!([]));

    let r = client()
        .get(f.server.url("/v2/team/app/tags/list?n=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "PAGINATION_NUMBER_INVALID");
}

#[tokio::test]
async fn catalog_lists_and_paginates() {
    let f = fixture().await;
    let v: Value = client()
        .get(f.server.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"repositories": ["hello", "s512", "team/app"]})
    );
    let r = client()
        .get(f.server.url("/v2/_catalog?n=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?n=1&last=hello>; rel=\"next\""
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["hello"]));
    let v: Value = client()
        .get(f.server.url("/v2/_catalog?n=5&last=hello"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["s512", "team/app"]));
}

#[tokio::test]
async fn referrers_list_and_filter() {
    let f = fixture().await;
    let url = f
        .server
        .url(&format!("/v2/hello/referrers/{}", digest(&f.image)));
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(r.headers().get("oci-filters-applied").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
    let listed: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    let mut expected = vec![digest(&f.sbom), digest(&f.sig)];
    expected.sort();
    assert_eq!(listed, expected);
    let sbom = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["digest"] == f.sbom["digest"])
        .unwrap();
    assert_eq!(sbom["artifactType"], "application/vnd.example.sbom.v1+json");
    assert_eq!(
        sbom["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(sbom["size"], f.sbom["size"]);
    assert_eq!(
        sbom["annotations"]["org.example.kind"],
        "application/vnd.example.sbom.v1+json"
    );

    let r = client()
        .get(format!(
            "{url}?artifactType=application%2Fvnd.example.sig.v1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], f.sig["digest"]);
}

#[tokio::test]
async fn referrers_of_unknown_subject_is_an_empty_index() {
    let f = fixture().await;
    let unknown = format!("sha256:{}", "0".repeat(64));
    let r = client()
        .get(f.server.url(&format!("/v2/hello/referrers/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
    let r = client()
        .get(f.server.url("/v2/hello/referrers/sha256:bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn writes_are_refused_with_405() {
    let f = fixture().await;
    let paths = [
        "/v2/hello/manifests/latest".to_string(),
        format!("/v2/hello/blobs/{}", digest(&f.small_layer)),
        "/v2/hello/blobs/uploads/".to_string(),
        "/v2/hello/blobs/uploads/some-session".to_string(),
        "/v2/hello/tags/list".to_string(),
    ];
    for path in &paths {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let r = client()
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    f.server.url(path),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
            assert!(r.headers().contains_key("allow"), "{method} {path}");
            assert_eq!(error_code(r).await, "UNSUPPORTED");
        }
    }
}

#[tokio::test]
async fn error_codes_and_statuses() {
    let f = fixture().await;
    let zero = format!("sha256:{}", "0".repeat(64));
    let cases = [
        ("/v2/nope/manifests/latest".to_string(), 404, "NAME_UNKNOWN"),
        ("/v2/nope/tags/list".to_string(), 404, "NAME_UNKNOWN"),
        (format!("/v2/nope/blobs/{zero}"), 404, "NAME_UNKNOWN"),
        (
            "/v2/hello/manifests/missing".to_string(),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("/v2/hello/manifests/{zero}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("/v2/hello/manifests/{}", digest(&f.small_layer)),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (format!("/v2/hello/blobs/{zero}"), 404, "BLOB_UNKNOWN"),
        (
            "/v2/hello/blobs/sha256:abc".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            format!("/v2/hello/blobs/md5:{}", "0".repeat(32)),
            400,
            "DIGEST_INVALID",
        ),
        (
            format!("/v2/hello/blobs/sha256:{}", "A".repeat(64)),
            400,
            "DIGEST_INVALID",
        ),
        (
            "/v2/hello/manifests/sha256:zz".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "/v2/hello/manifests/-bad-tag".to_string(),
            400,
            "TAG_INVALID",
        ),
        (
            "/v2/Hello/manifests/latest".to_string(),
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/a%2fb/manifests/latest".to_string(),
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/hello//x/manifests/latest".to_string(),
            400,
            "NAME_INVALID",
        ),
        ("/etc/passwd".to_string(), 404, "UNSUPPORTED"),
    ];
    for (path, status, code) in cases {
        let r = client().get(f.server.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(error_code(r).await, code, "{path}");
        let head = client().head(f.server.url(&path)).send().await.unwrap();
        assert_eq!(head.status(), status, "HEAD {path}");
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} has a body"
        );
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_serves_the_same() {
    let f = fixture().await;
    let r = h2c_client()
        .get(f.server.url("/v2/hello/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), digest(&f.image));
    let r = h2c_client()
        .get(
            f.server
                .url(&format!("/v2/hello/blobs/{}", digest(&f.big_layer))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), f.big_bytes.as_slice());
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture().await;
    let mut s = tokio::net::TcpStream::connect(f.server.addr).await.unwrap();
    let req = "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/hello/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.contains(r#"{"name":"hello","tags":["1.0","latest"]}"#));
}

/// HTTP/1.0 clients (ab, old proxies) get the keep-alive they ask for, with
/// `Connection` and `Content-Length` at the head's start where simple
/// clients look for them; without asking, the connection closes.
#[tokio::test]
async fn http10_keep_alive_is_kept_and_leads_the_head() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture().await;
    let path = format!("/v2/hello/blobs/{}", digest(&f.small_layer.0));
    let mut s = tokio::net::TcpStream::connect(f.server.addr).await.unwrap();
    let ask = format!("HEAD {path} HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: x\r\n\r\n");
    for _ in 0..2 {
        s.write_all(ask.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(s.read(&mut byte).await.unwrap(), 1, "connection kept open");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "http/1.0 200 ok", "{head}");
        assert_eq!(lines[1], "connection: keep-alive", "{head}");
        assert_eq!(lines[2], "content-length: 17", "{head}");
        assert_eq!(head.matches("connection:").count(), 1, "{head}");
        assert!(head.contains("docker-content-digest: sha256:"), "{head}");
    }

    let mut s = tokio::net::TcpStream::connect(f.server.addr).await.unwrap();
    let once = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    s.write_all(once.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "HTTP/1.0 200 OK", "{head}");
    assert_eq!(
        lines[1].to_ascii_lowercase(),
        "content-length: 17",
        "{head}"
    );
    assert!(!head.to_ascii_lowercase().contains("keep-alive"), "{head}");
    assert_eq!(body, "small layer bytes");
}

/// The digest headers of served manifests are kept per worker thread,
/// keyed by digest: a tag moved by a reload is answered, on the same
/// keep-alive connection, with the new manifest's digest, ETag, length
/// and bytes, and a conditional GET with the old ETag gets the new one.
#[tokio::test]
async fn a_moved_tag_is_served_with_the_new_digests_headers() {
    let root = ir_testkit::Root::new();
    let app = root.layout("app");
    let old = app.image(b"version 1");
    app.set_index(&[old.tagged("latest")]);
    let server = TestServer::start(root.path()).await;
    let reloader = ir_server::snapshot::reload::Reloader::new(
        server.state.catalog.clone(),
        root.path().to_path_buf(),
        ir_oci::LoadOptions::default(),
    );
    let client = client();
    let get = |etag: Option<String>| {
        let mut r = client.get(server.url("/v2/app/manifests/latest"));
        if let Some(e) = etag {
            r = r.header("if-none-match", e);
        }
        r.send()
    };
    for _ in 0..3 {
        let r = get(None).await.unwrap();
        assert_eq!(
            header(&r, "docker-content-digest"),
            old.manifest.digest_str()
        );
    }

    // A longer manifest: the length changes with the digest.
    let new = app.image_with_layers(&[b"version 2", b"and a second layer"]);
    app.set_index(&[new.tagged("latest")]);
    reloader.reload().await.unwrap();
    for _ in 0..3 {
        let r = get(None).await.unwrap();
        assert_eq!(r.status(), 200);
        let digest = new.manifest.digest_str();
        assert_eq!(header(&r, "docker-content-digest"), digest);
        assert_eq!(header(&r, "etag"), format!("\"{digest}\""));
        let length: usize = header(&r, "content-length").parse().unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), length);
        assert_eq!(
            ir_testkit::Alg::Sha256.digest(&body),
            digest,
            "the body is the new manifest"
        );
        let r = get(Some(format!("\"{}\"", old.manifest.digest_str())))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the old ETag no longer matches");
        assert_eq!(header(&r, "etag"), format!("\"{digest}\""));
    }
}
