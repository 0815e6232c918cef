//! Each store's failures, classified from typed errors: an S3 store (moto) and the GCS
//! emulator behind the fault proxy answering 503, or never answering (a timeout).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dataflux::store::gcs::{emulator_endpoint, GcsStore};
use dataflux::store::generic::GenericStore;
use dataflux::store::http::HttpTimeouts;
use dataflux::testing::{Fault, FaultProxy, FaultRule, RequestKind};
use dataflux::{Error, Store};

fn every(fault: Fault) -> Vec<FaultRule> {
    let kinds = vec![
        RequestKind::Media,
        RequestKind::Other,
        RequestKind::List,
        RequestKind::Upload,
        RequestKind::Delete,
        RequestKind::Compose,
    ];
    vec![FaultRule {
        kinds,
        fault,
        rate: 1.0,
        from: Duration::ZERO,
        until: None,
    }]
}

fn upstream(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("host:port")
}

/// A base S3 store (no retry layer) through `proxy`, with a 1 s idle timeout.
fn s3_through(proxy: &FaultProxy) -> Arc<dyn Store> {
    s3_bucket_through(proxy, "any-bucket")
}

/// [`s3_through`] for `bucket`.
fn s3_bucket_through(proxy: &FaultProxy, bucket: &str) -> Arc<dyn Store> {
    let mut builder = object_store::aws::AmazonS3Builder::from_env()
        .with_endpoint(proxy.url())
        .with_bucket_name(bucket)
        .with_http_connector(dataflux::store::http::RetryAfterConnector)
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        });
    let timeouts = HttpTimeouts::default()
        .with_idle(Duration::from_secs(1))
        .with_attempt(Duration::from_secs(3));
    for (key, value) in timeouts.client_config() {
        builder = builder.with_config(object_store::aws::AmazonS3ConfigKey::Client(key), value);
    }
    Arc::new(GenericStore::new(
        Arc::new(builder.build().expect("s3")),
        format!("s3://{bucket}"),
        true,
    ))
}

fn assert_transient(err: &Error, status: Option<u16>) {
    match err {
        Error::Request {
            status: s,
            transient: true,
            ..
        } => assert_eq!(*s, status, "{err}"),
        other => panic!("expected a transient request error with status {status:?}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failures_are_typed_and_transient() {
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT") else {
        eprintln!("AWS_ENDPOINT not set: S3 test skipped");
        return;
    };
    let busy = FaultProxy::start(upstream(&endpoint), 1, every(Fault::Status(503)))
        .await
        .unwrap();
    let err = s3_through(&busy).get("x", None).await.unwrap_err();
    assert_transient(&err, Some(503));
    let silent = FaultProxy::start(upstream(&endpoint), 1, every(Fault::Silent))
        .await
        .unwrap();
    let started = Instant::now();
    let err = s3_through(&silent).get("x", None).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "timed out, not hung"
    );
    assert!(err.is_transient(), "a timeout is transient: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_failures_are_typed_and_transient() {
    let Some(endpoint) = emulator_endpoint() else {
        eprintln!("STORAGE_EMULATOR_HOST not set: GCS test skipped");
        return;
    };
    let busy = FaultProxy::start(upstream(&endpoint), 1, every(Fault::Status(503)))
        .await
        .unwrap();
    let config = gcloud_storage::client::ClientConfig {
        storage_endpoint: busy.url(),
        http: Some(
            HttpTimeouts::default()
                .with_idle(Duration::from_secs(1))
                .with_attempt(Duration::from_secs(3))
                .gcs_client()
                .unwrap(),
        ),
        ..Default::default()
    }
    .anonymous();
    let store = GcsStore::with_config(config, "any-bucket");
    assert_transient(&store.get("x", None).await.unwrap_err(), Some(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_retries_wait_for_retry_after() {
    let Some(endpoint) = emulator_endpoint() else {
        eprintln!("STORAGE_EMULATOR_HOST not set: GCS test skipped");
        return;
    };
    // A bucket with one object, written straight to the emulator.
    let bucket = format!("retry-after-{}", std::process::id());
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b"))
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .await
        .expect("emulator");
    assert!(resp.status().is_success());
    let direct = GcsStore::connect(&bucket).await.unwrap();
    direct
        .put(
            "x",
            bytes::Bytes::from_static(b"hello"),
            dataflux::PutMode::Overwrite,
        )
        .await
        .unwrap();
    // For its first 300 ms the proxy answers 503 with Retry-After: 1.
    let throttled = FaultProxy::start(
        upstream(&endpoint),
        1,
        vec![FaultRule {
            kinds: vec![RequestKind::Media],
            fault: Fault::Throttle {
                status: 503,
                retry_after_secs: 1,
            },
            rate: 1.0,
            from: Duration::ZERO,
            until: Some(Duration::from_millis(300)),
        }],
    )
    .await
    .unwrap();
    let config = gcloud_storage::client::ClientConfig {
        storage_endpoint: throttled.url(),
        http: Some(HttpTimeouts::default().gcs_client().unwrap()),
        ..Default::default()
    }
    .anonymous();
    let store = dataflux::store::retrying::layered(
        Arc::new(GcsStore::with_config(config, &bucket)),
        dataflux::RetryPolicy::default(),
    );
    let started = Instant::now();
    assert_eq!(&store.get("x", None).await.unwrap()[..], b"hello");
    // The retry layer alone would have tried again within 0.2 s (and again, and again).
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        throttled.faults(),
        1,
        "one throttled attempt, then the answer"
    );
}

/// A new moto bucket named after `tag` and this process, and a store for it opened as the
/// job opens one (`Location::open`).
async fn s3_bucket(endpoint: &str, tag: &str) -> (String, Arc<dyn Store>) {
    let bucket = format!("{tag}-{}", std::process::id());
    let resp = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
        .send()
        .await
        .expect("moto reachable");
    assert!(
        resp.status().is_success(),
        "create bucket: {}",
        resp.status()
    );
    let direct = dataflux::Location::parse(&format!("s3://{bucket}"))
        .unwrap()
        .open()
        .await
        .unwrap();
    (bucket, direct)
}

/// A bounded range on an object_store store (S3) stops at its bound: one list request for a
/// range that fits in the first page, although the prefix holds more than a page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bounded_listing_stops_at_its_bound() {
    use futures::StreamExt;
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT") else {
        eprintln!("AWS_ENDPOINT not set: S3 test skipped");
        return;
    };
    let (bucket, direct) = s3_bucket(&endpoint, "bounded").await;
    futures::stream::iter(0..1100)
        .map(|i| {
            let direct = direct.clone();
            async move {
                direct
                    .put(
                        &format!("b/{i:04}"),
                        bytes::Bytes::from_static(b"x"),
                        dataflux::PutMode::Overwrite,
                    )
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let proxy = FaultProxy::start(upstream(&endpoint), 1, Vec::new())
        .await
        .unwrap();
    let store = s3_bucket_through(&proxy, &bucket);
    let page = store
        .list_page(dataflux::PageRequest::new("b/", None, Some("b/0099"), 1000))
        .await
        .unwrap();
    assert_eq!(page.objects.len(), 100);
    assert_eq!(page.objects.last().unwrap().name, "b/0099");
    assert!(!page.more);
    assert_eq!(proxy.requests(), 1, "read past the bound");
    // The whole prefix, for contrast: two pages of the store.
    let before = proxy.requests();
    let all = dataflux::list(
        &store,
        "b/",
        &dataflux::ListOptions::default().with_parallelism(1),
    )
    .await
    .unwrap();
    assert_eq!(all.objects.len(), 1100);
    assert!(proxy.requests() - before >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_retries_wait_for_retry_after() {
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT") else {
        eprintln!("AWS_ENDPOINT not set: S3 test skipped");
        return;
    };
    let (bucket, direct) = s3_bucket(&endpoint, "retry-after").await;
    direct
        .put(
            "x",
            bytes::Bytes::from_static(b"hello"),
            dataflux::PutMode::Overwrite,
        )
        .await
        .unwrap();
    // For its first 300 ms the proxy answers 503 with Retry-After: 1.
    let throttled = FaultProxy::start(
        upstream(&endpoint),
        1,
        vec![FaultRule {
            kinds: vec![RequestKind::Other],
            fault: Fault::Throttle {
                status: 503,
                retry_after_secs: 1,
            },
            rate: 1.0,
            from: Duration::ZERO,
            until: Some(Duration::from_millis(300)),
        }],
    )
    .await
    .unwrap();
    let store = dataflux::store::retrying::layered(
        s3_bucket_through(&throttled, &bucket),
        dataflux::RetryPolicy::default(),
    );
    let started = Instant::now();
    assert_eq!(&store.get("x", None).await.unwrap()[..], b"hello");
    // The retry layer alone would have tried again within 0.2 s (and again, and again).
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        throttled.faults(),
        1,
        "one throttled attempt, then the answer"
    );
}
