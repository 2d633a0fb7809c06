//! The metrics listener (`--metrics-addr`): `GET /metrics` (OpenMetrics
//! text), `/healthz` (the process is alive) and `/readyz` (the first load
//! finished). Plain HTTP/1.1, meant for a private network: a scraper and
//! probes, not the public.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::status::{Observed, STATUS_PATH};
use super::Metrics;

/// Path of the exposition.
pub const METRICS_PATH: &str = "/metrics";
/// Content type of the exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Connections the metrics listener serves at once.
const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` and serves `metrics` with `observed` in a background task.
/// Returns the bound address (useful with port 0).
pub async fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    observed: Observed,
) -> Result<SocketAddr, ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ListenError { addr, source })?;
    tracing::info!("serving /metrics, /status, /healthz and /readyz on http://{local}");
    tokio::spawn(serve(listener, metrics, observed));
    Ok(local)
}

/// The metrics listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("--metrics-addr: cannot listen on {addr}: {source}")]
pub struct ListenError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

/// Serves `metrics` and `observed` on `listener`, forever.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, observed: Observed) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (metrics, observed) = (metrics.clone(), observed.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = answer(&metrics, &observed, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "metrics connection ended: {e}");
            }
        });
    }
}

/// The answer to one request on the metrics listener.
pub fn answer(
    metrics: &Metrics,
    observed: &Observed,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if let Some((status, body)) = observed.readiness.probe(path) {
        return finish(method, text(status, body));
    }
    let response = match path {
        METRICS_PATH => {
            metrics.observe_state(&observed.catalog.load(), &observed.readiness);
            let body = metrics.encode();
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
            );
            r
        }
        STATUS_PATH => {
            let body =
                serde_json::to_vec_pretty(&super::status::document(observed)).unwrap_or_default();
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /status, /healthz or /readyz\n",
        ),
    };
    finish(method, response)
}

/// Adds `Cache-Control: no-store`, and drops the body of a HEAD answer.
fn finish(method: &Method, mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if method == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::readiness::Readiness;
    use crate::snapshot::catalog::{self, Catalog};

    fn observed(ready: bool) -> Observed {
        Observed {
            catalog: catalog::shared(Catalog::default()),
            readiness: Arc::new(Readiness::new(ready)),
            status: Arc::default(),
        }
    }

    fn status(observed: &Observed, draining: bool, method: Method, path: &str) -> u16 {
        if draining {
            observed.readiness.set_draining();
        }
        answer(&Metrics::new(), observed, &method, path)
            .status()
            .as_u16()
    }

    #[test]
    fn probes_follow_loading_and_shutdown() {
        let state = observed(false);
        assert_eq!(status(&state, false, Method::GET, "/healthz"), 200);
        assert_eq!(status(&state, false, Method::GET, "/readyz"), 503);
        state.readiness.set_ready();
        assert_eq!(status(&state, false, Method::GET, "/readyz"), 200);
        assert_eq!(status(&state, false, Method::HEAD, "/readyz"), 200);
        assert_eq!(status(&state, false, Method::GET, "/metrics"), 200);
        assert_eq!(status(&state, false, Method::GET, "/status"), 200);
        assert_eq!(status(&state, false, Method::GET, "/other"), 404);
        assert_eq!(status(&state, false, Method::PUT, "/metrics"), 405);
        assert_eq!(status(&state, true, Method::GET, "/readyz"), 503);
        assert_eq!(status(&state, true, Method::GET, "/healthz"), 200);
    }

    #[test]
    fn the_ready_gauge_drops_when_draining() {
        let state = observed(true);
        let m = Metrics::new();
        m.observe_state(&state.catalog.load(), &state.readiness);
        assert!(m.encode().contains("ir_server_ready 1\n"));
        state.readiness.set_draining();
        m.observe_state(&state.catalog.load(), &state.readiness);
        assert!(m.encode().contains("ir_server_ready 0\n"));
    }
}
