//! A fault-injecting HTTP proxy to put in front of a GCS
//! emulator, so that the faults real object stores have — 503 storms, connections that
//! accept a request and never answer, bodies cut short — reach the real client code.
//!
//! Each request goes upstream on a connection of its own (`Connection: close`), so the proxy
//! never has to frame a response; which request gets which fault is decided from the seed
//! and the request's number, so a run is reproducible up to the order of concurrent
//! requests. Written here rather than taken from a crate: no maintained Rust crate injects
//! faults per request kind into plain HTTP/1.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What a GCS JSON API request does, from its method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// An object's bytes (`alt=media`).
    Media,
    /// A compose request.
    Compose,
    /// A delete.
    Delete,
    /// A listing (`GET …/o`).
    List,
    /// An upload (`/upload/…`).
    Upload,
    /// Anything else (metadata reads, bucket calls).
    Other,
}

impl RequestKind {
    fn of(method: &str, target: &str) -> Self {
        let path = target.split('?').next().unwrap_or(target);
        if target.contains("alt=media") {
            RequestKind::Media
        } else if path.ends_with("/compose") {
            RequestKind::Compose
        } else if method.eq_ignore_ascii_case("DELETE") {
            RequestKind::Delete
        } else if path.starts_with("/upload/") {
            RequestKind::Upload
        } else if path.ends_with("/o") {
            RequestKind::List
        } else {
            RequestKind::Other
        }
    }
}

/// What happens to a faulty request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answered at once with this status (and `Connection: close`), never sent upstream.
    Status(u16),
    /// Answered at once with this status and `Retry-After: <seconds>`.
    Throttle {
        /// The status (429, 503).
        status: u16,
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u32,
    },
    /// Accepted and never answered (the connection stays open until the client gives up).
    Silent,
    /// Sent upstream; the response is cut after its headers and half its body.
    CutBody,
}

/// Requests of `kinds` get `fault` with probability `rate` while the proxy's clock is in
/// `from..until`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Which requests.
    pub kinds: Vec<RequestKind>,
    /// What happens to them.
    pub fault: Fault,
    /// Fraction of them, 0 to 1.
    pub rate: f64,
    /// From this long after the proxy started.
    pub from: Duration,
    /// Until this long after it started (`None`: for ever).
    pub until: Option<Duration>,
}

/// A proxy on a free port of 127.0.0.1 in front of `upstream`. Dropping it stops it.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    faults: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

struct Plan {
    rules: Vec<FaultRule>,
    seed: u64,
    started: Instant,
    requests: Arc<AtomicU64>,
    faults: Arc<AtomicU64>,
    upstream: SocketAddr,
}

impl FaultProxy {
    /// Starts the proxy; `rules` are tried in order, the first that fires wins.
    pub async fn start(
        upstream: SocketAddr,
        seed: u64,
        rules: Vec<FaultRule>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let plan = Arc::new(Plan {
            rules,
            seed,
            started: Instant::now(),
            requests: requests.clone(),
            faults: faults.clone(),
            upstream,
        });
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let plan = plan.clone();
                connections.spawn(async move {
                    let _ = serve(client, &plan).await;
                });
                // Reap finished connections as we go.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            addr,
            faults,
            requests,
            task,
        })
    }

    /// The base URL, for `STORAGE_EMULATOR_HOST`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far (faulty or not).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests that got a fault so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A uniform number in [0, 1) from the seed and the request number (SplitMix64).
fn uniform(seed: u64, n: u64) -> f64 {
    let mut z = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Plan {
    fn fault_for(&self, kind: RequestKind) -> Option<Fault> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let now = self.started.elapsed();
        let u = uniform(self.seed, n);
        let fault = self
            .rules
            .iter()
            .find(|r| {
                r.kinds.contains(&kind)
                    && now >= r.from
                    && r.until.is_none_or(|until| now < until)
                    && u < r.rate
            })
            .map(|r| r.fault);
        if fault.is_some() {
            self.faults.fetch_add(1, Ordering::SeqCst);
        }
        fault
    }
}

async fn serve(client: TcpStream, plan: &Plan) -> std::io::Result<()> {
    let (read, mut write) = client.into_split();
    let mut reader = BufReader::new(read);
    let mut head = Vec::with_capacity(1024);
    loop {
        if reader.read_until(b'\n', &mut head).await? == 0 {
            return Ok(());
        }
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut first = text.split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let kind = RequestKind::of(method, target);
    let length = content_length(&text);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    match plan.fault_for(kind) {
        Some(Fault::Status(status)) => answer(&mut write, status, None).await,
        Some(Fault::Throttle {
            status,
            retry_after_secs,
        }) => answer(&mut write, status, Some(retry_after_secs)).await,
        Some(Fault::Silent) => {
            // Hold the connection until the client gives up on it.
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink).await;
            Ok(())
        }
        fault => {
            let mut upstream = TcpStream::connect(plan.upstream).await?;
            upstream.write_all(&close_connection(&text)).await?;
            upstream.write_all(&body).await?;
            if fault == Some(Fault::CutBody) {
                let mut response = Vec::new();
                upstream.read_to_end(&mut response).await?;
                let split = response
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| p + 4)
                    .unwrap_or(response.len());
                let keep = split + (response.len() - split) / 2;
                write.write_all(&response[..keep]).await?;
            } else {
                tokio::io::copy(&mut upstream, &mut write).await?;
            }
            write.shutdown().await
        }
    }
}

/// Answers with `status` (and `Retry-After`), no body, and closes.
async fn answer(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    status: u16,
    retry_after_secs: Option<u32>,
) -> std::io::Result<()> {
    let retry_after = retry_after_secs
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let reply = format!(
        "HTTP/1.1 {status} Injected\r\n{retry_after}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

fn content_length(head: &str) -> usize {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The request head with `Connection: close` in place of any connection header.
fn close_connection(head: &str) -> Vec<u8> {
    let mut out = String::with_capacity(head.len() + 20);
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        if line.split_once(':').is_some_and(|(k, _)| {
            k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive")
        }) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_method_and_path() {
        for (method, target, kind) in [
            (
                "GET",
                "/download/storage/v1/b/x/o/a?alt=media",
                RequestKind::Media,
            ),
            (
                "GET",
                "/storage/v1/b/x/o/a?alt=media&generation=3",
                RequestKind::Media,
            ),
            (
                "POST",
                "/storage/v1/b/x/o/c/compose?ifGenerationMatch=0",
                RequestKind::Compose,
            ),
            ("DELETE", "/storage/v1/b/x/o/a", RequestKind::Delete),
            ("GET", "/storage/v1/b/x/o?prefix=a", RequestKind::List),
            (
                "POST",
                "/upload/storage/v1/b/x/o?uploadType=multipart",
                RequestKind::Upload,
            ),
            ("GET", "/storage/v1/b/x/o/a", RequestKind::Other),
        ] {
            assert_eq!(RequestKind::of(method, target), kind, "{method} {target}");
        }
    }

    #[test]
    fn faults_follow_the_seed_and_rate() {
        let hits = |seed| (0..10_000).filter(|&n| uniform(seed, n) < 0.03).count();
        assert_eq!(hits(7), hits(7));
        assert!((200..400).contains(&hits(7)), "{}", hits(7));
        assert_ne!(
            (0..50).map(|n| uniform(1, n) < 0.5).collect::<Vec<_>>(),
            (0..50).map(|n| uniform(2, n) < 0.5).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_connection_header_is_replaced() {
        let head = "GET /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(
            close_connection(head),
            b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
    }
}
