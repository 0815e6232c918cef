//! Shared test set-up: the three backends every storage test runs on.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dataflux::store::gcs::{emulator_endpoint, GcsStore};
use dataflux::store::generic::GenericStore;
use dataflux::{PutMode, Store};

/// How to get an emulator, for messages.
pub const HOW_TO_START: &str = "start fake-gcs-server (`bash .ci/test` does it for you), e.g.\n  \
fake-gcs-server -scheme http -host 127.0.0.1 -port 4443 -backend memory -external-url http://127.0.0.1:4443\n\
and export STORAGE_EMULATOR_HOST=http://127.0.0.1:4443; set DATAFLUX_SKIP_EMULATOR=1 to skip these tests";

/// A fresh bucket name, unique in this process and across runs.
pub fn unique_bucket(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "df-{tag}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

/// The emulator endpoint; panics with instructions when it is not configured, or returns
/// `None` when the user asked to skip emulator tests.
pub fn emulator() -> Option<String> {
    match emulator_endpoint() {
        Some(e) => Some(e),
        None if std::env::var("DATAFLUX_SKIP_EMULATOR").is_ok_and(|v| v == "1") => {
            eprintln!("skipping: STORAGE_EMULATOR_HOST is not set and DATAFLUX_SKIP_EMULATOR=1");
            None
        }
        None => panic!("STORAGE_EMULATOR_HOST is not set: {HOW_TO_START}"),
    }
}

/// A new, empty bucket on the emulator.
pub async fn gcs_store(tag: &str) -> Option<Arc<dyn Store>> {
    gcs_store_with_retry(tag, dataflux::RetryPolicy::default()).await
}

/// A new, empty bucket on the emulator, with a retry policy.
pub async fn gcs_store_with_retry(
    tag: &str,
    retry: dataflux::RetryPolicy,
) -> Option<Arc<dyn Store>> {
    let endpoint = emulator()?;
    let bucket = unique_bucket(tag);
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b"))
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot reach the emulator at {endpoint}: {e}\n{HOW_TO_START}"));
    assert!(
        resp.status().is_success(),
        "creating bucket {bucket}: {}",
        resp.status()
    );
    Some(dataflux::store::retrying::layered(
        Arc::new(GcsStore::connect(&bucket).await.expect("connect")),
        retry,
    ))
}

/// A new in-memory store that pages like a remote one.
pub fn paged_memory_store() -> Arc<dyn Store> {
    dataflux::store::retrying::layered(
        Arc::new(GenericStore::new(
            Arc::new(object_store::memory::InMemory::new()),
            "memory://paged",
            true,
        )),
        dataflux::RetryPolicy::default(),
    )
}

/// A new local-directory store (the directory lives as long as the returned guard).
pub async fn local_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let loc = dataflux::Location::parse(dir.path().to_str().expect("utf-8 path")).expect("parse");
    (loc.open().await.expect("open"), dir)
}

/// Writes `names`, each with content `name` repeated `(i % 3) + 1` times.
pub async fn put_all(store: &Arc<dyn Store>, names: &[String]) {
    futures::future::try_join_all(names.iter().enumerate().map(|(i, n)| {
        let store = store.clone();
        let body = Bytes::from(n.repeat(i % 3 + 1));
        async move { store.put(n, body, PutMode::Overwrite).await }
    }))
    .await
    .expect("put");
}

/// The content [`put_all`] writes for the `i`-th name.
pub fn content_of(i: usize, name: &str) -> Vec<u8> {
    name.repeat(i % 3 + 1).into_bytes()
}

/// A new bucket on moto's S3 server (`AWS_ENDPOINT`, set by `.ci/test`), or `None` when no
/// S3 endpoint is configured.
pub async fn s3_store(tag: &str) -> Option<Arc<dyn Store>> {
    let endpoint = std::env::var("AWS_ENDPOINT").ok()?;
    let bucket = unique_bucket(tag);
    let resp = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot reach S3 at {endpoint}: {e}"));
    assert!(
        resp.status().is_success(),
        "creating bucket {bucket}: {}",
        resp.status()
    );
    Some(
        dataflux::Location::parse(&format!("s3://{bucket}"))
            .expect("parse")
            .open()
            .await
            .expect("open"),
    )
}
