//! Starts the real server on 127.0.0.1 with an OS-chosen port.

pub mod pki;
pub mod policy;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ir_server::api::ApiState;
use ir_server::metrics::Metrics;
use ir_server::snapshot::catalog::{self, Catalog};
use ir_server::transport::server::ConnLimits;
use ir_server::transport::{plain::Plain, Handshake, ServeOptions};
use tokio::sync::oneshot;

pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub state: Arc<ApiState>,
    /// The server's own metrics (requests, connections, downloads).
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Loads `root` (asserting nothing was rejected) and serves it.
    pub async fn start(root: &Path) -> TestServer {
        let registry = ir_oci::load(root, &ir_oci::LoadOptions::default()).unwrap();
        assert!(registry.rejected.is_empty(), "{:?}", registry.rejected);
        Self::serve(registry, ConnLimits::default()).await
    }

    /// Loads `root` and serves it with a blob cache of `budget` bytes.
    pub async fn start_cached(root: &Path, budget: u64) -> TestServer {
        let registry = ir_oci::load(root, &ir_oci::LoadOptions::default()).unwrap();
        assert!(registry.rejected.is_empty(), "{:?}", registry.rejected);
        let catalog = Catalog::new(registry)
            .with_blob_cache(ir_server::delivery::blob_cache::BlobCache::new(budget));
        Self::serve_catalog(
            catalog,
            Arc::new(Plain),
            options(ConnLimits::default()),
            "http",
        )
        .await
    }

    pub async fn serve(registry: ir_oci::Registry, limits: ConnLimits) -> TestServer {
        Self::serve_with(registry, Arc::new(Plain), options(limits), "http").await
    }

    /// Serves `registry` on a transport of the caller's choice.
    pub async fn serve_with<H: Handshake>(
        registry: ir_oci::Registry,
        handshake: Arc<H>,
        options: ServeOptions,
        scheme: &str,
    ) -> TestServer {
        Self::serve_catalog(Catalog::new(registry), handshake, options, scheme).await
    }

    /// Serves `catalog` on a transport of the caller's choice.
    pub async fn serve_catalog<H: Handshake>(
        catalog: Catalog,
        handshake: Arc<H>,
        options: ServeOptions,
        scheme: &str,
    ) -> TestServer {
        let metrics = Arc::new(Metrics::new());
        let catalog = catalog.counting_downloads(metrics.clone());
        let state = ApiState::new(catalog::shared(catalog), false);
        Self::serve_state(
            state.with_metrics(Some(metrics)),
            handshake,
            options,
            scheme,
        )
        .await
    }

    /// Serves `state` (e.g. with authentication) on a transport of the
    /// caller's choice; its metrics are counted (a fresh set if it has none).
    pub async fn serve_state<H: Handshake>(
        state: ApiState,
        handshake: Arc<H>,
        options: ServeOptions,
        scheme: &str,
    ) -> TestServer {
        let metrics = state
            .metrics
            .clone()
            .unwrap_or_else(|| Arc::new(Metrics::new()));
        let state = Arc::new(state.with_metrics(Some(metrics.clone())));
        let listener = ir_server::transport::bind("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ir_server::transport::serve(
            listener,
            handshake,
            state.clone(),
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            addr,
            base: format!("{scheme}://{addr}"),
            state,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Requests shutdown and waits for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Test-sized bounds: short grace so tests end quickly.
pub fn options(limits: ConnLimits) -> ServeOptions {
    ServeOptions {
        limits,
        max_connections: 1000,
        grace: Duration::from_secs(5),
        ..ServeOptions::default()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

pub fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

pub fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// The single error of an OCI error body.
pub async fn error_code(r: reqwest::Response) -> String {
    assert_eq!(header(&r, "content-type"), "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

/// The status of a GET of `path`.
pub async fn status(server: &TestServer, path: &str) -> u16 {
    client()
        .get(server.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Runs `ir-server --check -r ROOT ARGS`: its exit code, stdout and stderr.
pub fn check(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ir-server"))
        .arg("--check")
        .arg("-r")
        .arg(root)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
