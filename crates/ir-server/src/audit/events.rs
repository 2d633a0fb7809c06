//! `--events-url URL`: each delivery and each refused pull (authentication,
//! attestation, policy) posted as a CloudEvent (JSON batch mode,
//! `application/cloudevents-batch+json`), the way distribution posts its
//! notifications: batched, retried with backoff, and bounded everywhere.
//! A full queue or a batch out of attempts is dropped and counted, never
//! held: a slow endpoint costs events, not memory or responses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

/// The CloudEvents `type` of a served manifest.
pub const DELIVERY: &str = "dev.ir-server.delivery";
/// The CloudEvents `type` of a refused pull.
pub const REFUSAL: &str = "dev.ir-server.refusal";
/// The CloudEvents `type` of a receipts journal head, after a checkpoint
/// synced it.
pub const CHECKPOINT: &str = "dev.ir-server.receipts.checkpoint";

/// How events are sent.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Where batches are posted (http or https).
    pub url: reqwest::Url,
    /// The CloudEvents `source` of every event.
    pub source: String,
    /// Events waiting at most; more are dropped.
    pub queue: usize,
    /// Events per POST at most.
    pub batch_max: usize,
    /// Longest an event waits for its batch to fill.
    pub linger: Duration,
    /// Attempts per batch before it is dropped.
    pub attempts: u32,
    /// Time allowed for one POST.
    pub timeout: Duration,
}

impl EventsConfig {
    /// Defaults for `url`: 10,000 queued, 100 per batch, 1 s linger, 5
    /// attempts of 5 s each.
    pub fn new(url: reqwest::Url, source: String) -> Self {
        Self {
            url,
            source,
            queue: 10_000,
            batch_max: 100,
            linger: Duration::from_secs(1),
            attempts: 5,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What the sender has done, for metrics.
#[derive(Debug, Default)]
pub struct EventStats {
    /// Events the endpoint accepted (a 2xx answer).
    pub sent: AtomicU64,
    /// POSTs repeated after a failure.
    pub retried: AtomicU64,
    /// Events dropped: the queue was full, or their batch ran out of attempts.
    pub dropped: AtomicU64,
}

/// One event, before it is framed as a CloudEvent.
#[derive(Debug, Clone)]
pub struct Event {
    /// [`DELIVERY`], [`REFUSAL`] or [`CHECKPOINT`].
    pub kind: &'static str,
    /// The application concerned (`subject`), if known.
    pub subject: Option<String>,
    /// The event's data.
    pub data: serde_json::Value,
}

/// The server's handle: posting never waits.
#[derive(Debug, Clone)]
pub struct Events {
    queue: mpsc::Sender<serde_json::Value>,
    stats: Arc<EventStats>,
    source: Arc<str>,
    closing: Arc<tokio::sync::Notify>,
}

impl Events {
    /// Starts the sender task on the current runtime.
    pub fn spawn(config: EventsConfig) -> Result<(Self, tokio::task::JoinHandle<()>), String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("--events-url: cannot build an HTTP client: {e}"))?;
        let (queue, inbox) = mpsc::channel(config.queue.max(1));
        let stats = Arc::new(EventStats::default());
        let source: Arc<str> = config.source.clone().into();
        let closing = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(send_loop(
            config,
            client,
            inbox,
            stats.clone(),
            closing.clone(),
        ));
        Ok((
            Self {
                queue,
                stats,
                source,
                closing,
            },
            task,
        ))
    }

    /// Queues one event; when the queue is full it is dropped and counted.
    pub fn post(&self, event: Event) {
        let framed = cloud_event(&self.source, event);
        if self.queue.try_send(framed).is_err() {
            let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_power_of_two() || dropped == 0 {
                tracing::warn!(
                    dropped = dropped + 1,
                    "events: the queue is full, an event was dropped"
                );
            }
        }
    }

    /// What the sender has done.
    pub fn stats(&self) -> Arc<EventStats> {
        self.stats.clone()
    }

    /// Asks the sender to post what is queued, each batch once, and stop.
    pub fn close(&self) {
        self.closing.notify_one();
    }
}

/// Frames an event as a CloudEvents 1.0 JSON object.
fn cloud_event(source: &str, event: Event) -> serde_json::Value {
    let mut id = [0u8; 16];
    // An unpredictable, unique ID; if the RNG fails, the time still differs.
    let _ = aws_lc_rs::rand::fill(&mut id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut value = serde_json::json!({
        "specversion": "1.0",
        "id": format!("{}-{}", hex::encode(id), now.as_nanos()),
        "source": source,
        "type": event.kind,
        "time": ir_jose::rfc3339(i64::try_from(now.as_secs()).unwrap_or(i64::MAX)),
        "datacontenttype": "application/json",
        "data": event.data,
    });
    if let Some(subject) = event.subject {
        value["subject"] = subject.into();
    }
    value
}

async fn send_loop(
    config: EventsConfig,
    client: reqwest::Client,
    mut inbox: mpsc::Receiver<serde_json::Value>,
    stats: Arc<EventStats>,
    closing: Arc<tokio::sync::Notify>,
) {
    let batch_max = config.batch_max.max(1);
    loop {
        let first = tokio::select! {
            event = inbox.recv() => event,
            () = closing.notified() => break,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.linger;
        while batch.len() < batch_max {
            tokio::select! {
                event = tokio::time::timeout_at(deadline, inbox.recv()) => match event {
                    Ok(Some(event)) => batch.push(event),
                    Ok(None) | Err(_) => break,
                },
                () = closing.notified() => {
                    closing.notify_one();
                    break;
                }
            }
        }
        send_batch(&config, &client, &batch, &stats).await;
    }
    // Shutting down: what is queued, each batch tried once.
    let last_try = EventsConfig {
        attempts: 1,
        ..config.clone()
    };
    let mut batch = Vec::new();
    while let Ok(event) = inbox.try_recv() {
        batch.push(event);
        if batch.len() == batch_max {
            send_batch(&last_try, &client, &std::mem::take(&mut batch), &stats).await;
        }
    }
    if !batch.is_empty() {
        send_batch(&last_try, &client, &batch, &stats).await;
    }
}

/// Posts one batch, retrying with doubling waits; a batch out of
/// attempts is dropped and counted.
async fn send_batch(
    config: &EventsConfig,
    client: &reqwest::Client,
    batch: &[serde_json::Value],
    stats: &EventStats,
) {
    let body = serde_json::to_vec(batch).expect("events serialize");
    let mut wait = Duration::from_millis(200);
    for attempt in 1..=config.attempts.max(1) {
        let answer = client
            .post(config.url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/cloudevents-batch+json",
            )
            .body(body.clone())
            .send()
            .await;
        let why = match answer {
            Ok(r) if r.status().is_success() => {
                stats.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
            Ok(r) => format!("status {}", r.status().as_u16()),
            // Without the URL: it may hold credentials.
            Err(e) => e.without_url().to_string(),
        };
        if attempt == config.attempts.max(1) {
            stats
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                events = batch.len(),
                attempts = attempt,
                "events: the endpoint refused a batch ({why}); dropped"
            );
            return;
        }
        stats.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// An endpoint answering the statuses given, in turn (then 200), and
    /// keeping every body it received.
    async fn endpoint(statuses: Vec<u16>) -> (reqwest::Url, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 65536];
                // Read headers and the body announced by Content-Length.
                loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            seen.lock()
                                .unwrap()
                                .push(text[end + 4..end + 4 + length].to_string());
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let status = statuses.next().unwrap_or(200);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (url.parse().unwrap(), bodies)
    }

    fn delivery(n: u64) -> Event {
        Event {
            kind: DELIVERY,
            subject: Some("app".into()),
            data: serde_json::json!({ "n": n }),
        }
    }

    async fn settle(stats: &EventStats, total: u64) {
        for _ in 0..200 {
            let done = stats.sent.load(Ordering::Relaxed) + stats.dropped.load(Ordering::Relaxed);
            if done >= total {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn events_arrive_as_a_cloudevents_batch() {
        let (url, bodies) = endpoint(vec![]).await;
        let mut config = EventsConfig::new(url, "ir-server/test".into());
        config.linger = Duration::from_millis(50);
        let (events, _task) = Events::spawn(config).unwrap();
        for n in 0..3 {
            events.post(delivery(n));
        }
        settle(&events.stats(), 3).await;
        assert_eq!(events.stats().sent.load(Ordering::Relaxed), 3);
        let bodies = bodies.lock().unwrap();
        let batch: Vec<serde_json::Value> = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(batch.len(), 3, "one POST for the three");
        assert_eq!(batch[0]["specversion"], "1.0");
        assert_eq!(batch[0]["type"], DELIVERY);
        assert_eq!(batch[0]["source"], "ir-server/test");
        assert_eq!(batch[0]["subject"], "app");
        assert_eq!(batch[2]["data"]["n"], 2);
        assert_ne!(batch[0]["id"], batch[1]["id"]);
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_retried_then_the_batch_is_dropped_and_counted() {
        let (url, _) = endpoint(vec![503, 500, 503, 503, 503, 503]).await;
        let mut config = EventsConfig::new(url, "s".into());
        config.linger = Duration::from_millis(10);
        config.attempts = 3;
        let (events, _task) = Events::spawn(config).unwrap();
        events.post(delivery(1));
        settle(&events.stats(), 1).await;
        let stats = events.stats();
        assert_eq!(stats.sent.load(Ordering::Relaxed), 0);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.retried.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_retry_that_succeeds_delivers_and_counts_the_retry() {
        let (url, bodies) = endpoint(vec![503]).await;
        let mut config = EventsConfig::new(url, "s".into());
        config.linger = Duration::from_millis(10);
        let (events, _task) = Events::spawn(config).unwrap();
        events.post(delivery(1));
        settle(&events.stats(), 1).await;
        let stats = events.stats();
        assert_eq!(stats.sent.load(Ordering::Relaxed), 1);
        assert_eq!(stats.retried.load(Ordering::Relaxed), 1);
        assert_eq!(bodies.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_drops_rather_than_grows() {
        // Nothing listens: every POST fails, slowly enough for the queue to fill.
        let url: reqwest::Url = "http://127.0.0.1:9/events".parse().unwrap();
        let mut config = EventsConfig::new(url, "s".into());
        config.queue = 4;
        config.batch_max = 1;
        let (events, _task) = Events::spawn(config).unwrap();
        for n in 0..100 {
            events.post(delivery(n));
        }
        let dropped = events.stats().dropped.load(Ordering::Relaxed);
        assert!(dropped >= 95, "at most 4 queued and 1 in flight: {dropped}");
    }
}
