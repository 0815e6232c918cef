//! Timeouts on every HTTP request, for every remote store: one place for their defaults.
//!
//! A request that gets no connection, no first byte, or no byte for a while mid-body is a
//! transient failure (retried by [`super::retrying::RetryStore`]), never a hang. The defaults
//! suit GCS and S3 serving small objects: a connection is up in milliseconds (10 s covers a
//! cold DNS and TLS handshake under load); a healthy server answers or streams within
//! seconds, so 30 s without a byte means a stalled connection (Google's client libraries use
//! a 60 s per-request timeout and retry within minutes); 5 minutes bounds one attempt of the
//! largest request we send (a 32 MiB composite or an 8 MiB range at a few MB/s).
//!
//! The GCS client (feature `gcs`) and the S3 client (feature `s3`) each honour `Retry-After`
//! here; [`HttpTimeouts`] is always available.

use std::time::Duration;

/// Per-request timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpTimeouts {
    /// To establish a connection.
    pub connect: Duration,
    /// Without a byte: before the first one (headers) and between any two of a body.
    pub idle: Duration,
    /// One attempt in all, from sending the request to the last byte.
    pub attempt: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            attempt: Duration::from_secs(300),
        }
    }
}

/// Chainable setters, one per field: callers build it as `HttpTimeouts::default().with_…(…)`, so
/// that new fields do not break them.
impl HttpTimeouts {
    /// Sets [`connect`](Self::connect): to establish a connection.
    #[must_use]
    pub fn with_connect(mut self, connect: Duration) -> Self {
        self.connect = connect;
        self
    }

    /// Sets [`idle`](Self::idle): without a byte.
    #[must_use]
    pub fn with_idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Sets [`attempt`](Self::attempt): one attempt in all, from sending the request to the last
    /// byte.
    #[must_use]
    pub fn with_attempt(mut self, attempt: Duration) -> Self {
        self.attempt = attempt;
        self
    }
}

impl HttpTimeouts {
    /// The defaults, each overridden by its variable when set (seconds, fractions allowed):
    /// `DATAFLUX_HTTP_CONNECT_TIMEOUT_SECS`, `DATAFLUX_HTTP_IDLE_TIMEOUT_SECS`,
    /// `DATAFLUX_HTTP_ATTEMPT_TIMEOUT_SECS`.
    pub fn from_env() -> Self {
        let var = |name: &str, default: Duration| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(default)
        };
        let d = Self::default();
        Self {
            connect: var("DATAFLUX_HTTP_CONNECT_TIMEOUT_SECS", d.connect),
            idle: var("DATAFLUX_HTTP_IDLE_TIMEOUT_SECS", d.idle),
            attempt: var("DATAFLUX_HTTP_ATTEMPT_TIMEOUT_SECS", d.attempt),
        }
    }

    /// An HTTP client for `gcloud-storage` with these timeouts, honouring `Retry-After`
    /// (feature `gcs`).
    #[cfg(feature = "gcs")]
    pub fn gcs_client(&self) -> reqwest::Result<reqwest_middleware::ClientWithMiddleware> {
        let client = reqwest::Client::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.idle)
            .timeout(self.attempt)
            .build()?;
        Ok(reqwest_middleware::ClientBuilder::new(client)
            .with(HonourRetryAfter {
                cap: MAX_RETRY_AFTER,
            })
            .build())
    }

    /// These timeouts as `object_store` client settings, to add to a builder's own (a whole
    /// `ClientOptions` would replace what the builder read from the environment, such as
    /// `AWS_ALLOW_HTTP`). Feature `s3`.
    #[cfg(feature = "s3")]
    pub fn client_config(&self) -> [(object_store::ClientConfigKey, String); 3] {
        use object_store::ClientConfigKey as Key;
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        [
            (Key::ConnectTimeout, ms(self.connect)),
            (Key::ReadTimeout, ms(self.idle)),
            (Key::Timeout, ms(self.attempt)),
        ]
    }
}

/// The longest `Retry-After` honoured; a longer one is cut to this (the retry layer's
/// deadline still bounds the operation).
#[cfg(any(feature = "gcs", feature = "s3"))]
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Hands a 429 or 503 answer carrying `Retry-After: <seconds>` back only after that delay
/// (at most `cap`), so that the retry layer's next attempt is no sooner than the server asked.
/// Not a retry layer of its own: it never sends a request again. The GCS client's middleware;
/// `RetryAfterConnector` (feature `s3`) does the same for `object_store`'s (S3) client.
#[cfg(feature = "gcs")]
#[derive(Debug, Clone, Copy)]
struct HonourRetryAfter {
    cap: Duration,
}

#[cfg(feature = "gcs")]
#[async_trait::async_trait]
impl reqwest_middleware::Middleware for HonourRetryAfter {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let response = next.run(req, extensions).await?;
        if matches!(response.status().as_u16(), 429 | 503) {
            if let Some(wait) = retry_after(response.headers()) {
                tracing::debug!(?wait, status = %response.status(), "the server asked to retry later");
                tokio::time::sleep(wait.min(self.cap)).await;
            }
        }
        Ok(response)
    }
}

/// `object_store`'s HTTP client (its own reqwest client, built from the builder's options)
/// with `Retry-After` honoured as the GCS client's middleware honours it: a 429 or 503 answer
/// asking for a delay is handed back only after it (at most [`MAX_RETRY_AFTER`]), so that
/// [`crate::store::retrying::RetryStore`]'s next attempt waits as the server asked.
/// `object_store` errors carry no headers, so this is the one place that sees them.
/// Feature `s3`.
#[cfg(feature = "s3")]
#[derive(Debug, Default, Clone, Copy)]
pub struct RetryAfterConnector;

#[cfg(feature = "s3")]
impl object_store::client::HttpConnector for RetryAfterConnector {
    fn connect(
        &self,
        options: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        let inner = object_store::client::ReqwestConnector::default().connect(options)?;
        Ok(object_store::client::HttpClient::new(RetryAfterService {
            inner,
            cap: MAX_RETRY_AFTER,
        }))
    }
}

#[cfg(feature = "s3")]
#[derive(Debug)]
struct RetryAfterService {
    inner: object_store::client::HttpClient,
    cap: Duration,
}

#[cfg(feature = "s3")]
#[async_trait::async_trait]
impl object_store::client::HttpService for RetryAfterService {
    async fn call(
        &self,
        req: object_store::client::HttpRequest,
    ) -> Result<object_store::client::HttpResponse, object_store::client::HttpError> {
        let response = self.inner.execute(req).await?;
        if matches!(response.status().as_u16(), 429 | 503) {
            if let Some(wait) = retry_after(response.headers()) {
                tracing::debug!(?wait, status = %response.status(), "the server asked to retry later");
                tokio::time::sleep(wait.min(self.cap)).await;
            }
        }
        Ok(response)
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by GCS and is ignored).
#[cfg(any(feature = "gcs", feature = "s3"))]
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(all(test, any(feature = "gcs", feature = "s3")))]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
