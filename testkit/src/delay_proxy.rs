//! A TCP proxy that adds a fixed delay to every HTTP/1.1 request: the round trip to a real
//! object store, in front of an emulator (benchmarks of listing, fetching, the whole job).
//!
//! Written here rather than taken from a crate: no maintained Rust crate delays whole
//! HTTP/1.1 requests (not bytes) on kept-alive connections.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy that holds every HTTP/1.1 request for a fixed delay before forwarding it:
/// one added round trip per request, on fresh and kept-alive connections alike.
///
/// Requests are framed by their head and `Content-Length` (what our clients send; chunked
/// request bodies are not supported); responses are copied through untouched. Clients do
/// not pipeline, so the next request on a connection only starts after the previous
/// response, and each pays the delay once.
pub struct DelayProxy {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Starts a proxy to `upstream` on a free port.
    pub async fn start(upstream: SocketAddr, delay: Duration) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Err(e) = relay(client, upstream, delay).await {
                        eprintln!("proxy connection: {e:#}");
                    }
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// The proxy's base URL, for `STORAGE_EMULATOR_HOST`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, delay: Duration) -> Result<()> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let responses = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let result = forward_requests(BufReader::new(client_read), &mut server_write, delay).await;
    let _ = server_write.shutdown().await;
    let _ = responses.await;
    result
}

/// Copies requests from `reader` to `server` one by one, each after `delay`.
async fn forward_requests(
    mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    server: &mut tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) -> Result<()> {
    loop {
        let mut head = Vec::with_capacity(1024);
        loop {
            let n = reader.read_until(b'\n', &mut head).await?;
            if n == 0 {
                return Ok(()); // the client closed the connection
            }
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let body = body_length(&head)?;
        tokio::time::sleep(delay).await;
        server.write_all(&head).await?;
        let copied = tokio::io::copy(&mut (&mut reader).take(body), server).await?;
        if copied != body {
            bail!("request body cut short: {copied} of {body} bytes");
        }
    }
}

/// The body length a request head announces (0 without `Content-Length`).
fn body_length(head: &[u8]) -> Result<u64> {
    let text = String::from_utf8_lossy(head);
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            return value
                .trim()
                .parse()
                .with_context(|| format!("bad Content-Length {value:?}"));
        }
        if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
            bail!("chunked request bodies are not supported by the delaying proxy");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_frames_requests() {
        let head = b"POST /x HTTP/1.1\r\nHost: a\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(body_length(head).unwrap(), 12);
        assert_eq!(body_length(b"GET / HTTP/1.1\r\n\r\n").unwrap(), 0);
        assert!(body_length(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }
}
