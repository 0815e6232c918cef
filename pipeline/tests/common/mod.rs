//! Test set-up shared by the job tests: a fast deterministic model, inputs with known rows,
//! a store that fails on a schedule, and checks of the outputs' exact contents.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dataflux::store::{Capabilities, Page, PageRequest};
use dataflux::{Location, ObjectMeta, Operation, PutMode, Stats, Store};
use dataflux_pipeline::{
    BatchModel, Column, ColumnKind, JobSpec, ModelError, Rejection, Row, Stores, Value,
};

/// Rows are the CRC32C of each object's bytes. Bytes starting `BAD` are rejected, `PANIC`
/// panics in preprocessing; `delay` is spent per batch; `panic_in_infer` panics there.
pub struct Checksum {
    pub delay: Duration,
    pub panic_in_infer: bool,
}

impl Checksum {
    pub fn fast() -> Arc<Self> {
        Self::slow(Duration::ZERO)
    }
    pub fn slow(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            delay,
            panic_in_infer: false,
        })
    }
}

impl BatchModel for Checksum {
    type Input = u32;
    fn task(&self) -> &str {
        "checksum"
    }
    fn definition(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("algorithm".to_string(), "crc32c".to_string())])
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::new("crc", ColumnKind::Text)]
    }
    fn preprocess(&self, bytes: &[u8]) -> Result<u32, Rejection> {
        if bytes.starts_with(b"BAD") {
            return Err(Rejection::new("decode", "bad magic"));
        }
        if bytes.starts_with(b"PANIC") {
            panic!("decoder exploded");
        }
        Ok(crc32c::crc32c(bytes))
    }
    fn infer(&self, batch: Vec<u32>) -> Result<Vec<Row>, ModelError> {
        if self.panic_in_infer {
            panic!("model exploded");
        }
        std::thread::sleep(self.delay);
        Ok(batch
            .into_iter()
            .map(|c| vec![Value::Text(format!("{c:08x}"))])
            .collect())
    }
}

/// A fresh memory store with `n` good images and the bad ones; returns the store and the
/// expected `image_id -> crc` rows and bad objects.
pub async fn inputs(
    name: &str,
    n: usize,
) -> (Arc<dyn Store>, BTreeMap<String, String>, BTreeSet<String>) {
    let store = Location::parse(&format!("memory://{name}"))
        .unwrap()
        .open()
        .await
        .unwrap();
    let mut good = BTreeMap::new();
    for i in 0..n {
        let body = format!("image number {i} of {name}");
        store
            .put(
                &format!("imgs/{i:05}.jpg"),
                Bytes::from(body.clone()),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
        good.insert(
            format!("{i:05}"),
            format!("{:08x}", crc32c::crc32c(body.as_bytes())),
        );
    }
    let mut bad = BTreeSet::new();
    for (i, body) in [(3, "BAD one"), (n / 2 + 1, "BAD two"), (n - 2, "PANIC now")] {
        let object = format!("imgs/{i:05}-x.jpg");
        store
            .put(&object, Bytes::from(body.to_string()), PutMode::Overwrite)
            .await
            .unwrap();
        bad.insert(object);
    }
    (store, good, bad)
}

/// A spec with small chunks and short leases.
pub fn spec(name: &str, run: &str) -> JobSpec {
    JobSpec {
        input: Location::parse(&format!("memory://{name}/imgs")).unwrap(),
        output: Location::parse(&format!("memory://{name}/out")).unwrap(),
        run_id: Some(run.into()),
        chunk_size: 8,
        batch_size: 4,
        lease: Duration::from_millis(800),
        poll: Duration::from_millis(50),
        grace: Duration::from_secs(5),
        store_deadline: Duration::from_secs(60),
        wait_timeout: Duration::from_secs(60),
        decode_threads: 1,
        ..JobSpec::default()
    }
}

pub fn stores(store: &Arc<dyn Store>) -> Stores {
    Stores {
        input: store.clone(),
        output: store.clone(),
    }
}

/// Reads the finished run's outputs and checks that every image has exactly one row with
/// the expected value, every bad input exactly one error row, that there are exactly the
/// summary's shards, and that nothing temporary is left. Returns the shard count.
pub async fn check_exactly_once(
    store: &Arc<dyn Store>,
    run: &str,
    good: &BTreeMap<String, String>,
    bad: &BTreeSet<String>,
) -> usize {
    let summary: serde_json::Value = serde_json::from_slice(
        &store
            .get(&format!("out/_job_summary_{run}.json"), None)
            .await
            .expect("job summary"),
    )
    .unwrap();
    let shards = summary["shards"].as_u64().unwrap() as usize;
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    for s in 0..shards {
        let results = store
            .get(&format!("out/results_{run}_shard_{s}.csv"), None)
            .await
            .expect("results file");
        let mut reader = csv::Reader::from_reader(&results[..]);
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            ["image_id", "crc"]
        );
        for r in reader.records() {
            let r = r.unwrap();
            rows.entry(r[0].to_string())
                .or_default()
                .push(r[1].to_string());
        }
        let errs = store
            .get(&format!("out/errors_{run}_shard_{s}.csv"), None)
            .await
            .expect("errors file");
        for r in csv::Reader::from_reader(&errs[..]).records() {
            errors.push(r.unwrap()[0].to_string());
        }
        assert!(store
            .head(&format!("out/_SUCCESS_{run}_shard_{s}.json"))
            .await
            .is_ok());
    }
    assert!(
        store
            .head(&format!("out/results_{run}_shard_{shards}.csv"))
            .await
            .is_err(),
        "no shard beyond the run's {shards}"
    );
    let want: BTreeMap<String, Vec<String>> = good
        .iter()
        .map(|(k, v)| (k.clone(), vec![v.clone()]))
        .collect();
    assert_eq!(rows, want, "every image exactly once, with its value");
    let errors_set: BTreeSet<String> = errors.iter().cloned().collect();
    assert_eq!(
        errors.len(),
        errors_set.len(),
        "no doubled error rows: {errors:?}"
    );
    assert_eq!(&errors_set, bad, "one error row per bad input");
    assert_eq!(summary["images_ok"].as_u64(), Some(good.len() as u64));
    assert_eq!(summary["images_failed"].as_u64(), Some(bad.len() as u64));
    let left = leftovers(store, run).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    shards
}

/// The run's temporaries still in the store.
pub async fn leftovers(store: &Arc<dyn Store>, run: &str) -> Vec<String> {
    let all = dataflux::list(
        store,
        "",
        &dataflux::ListOptions {
            temp_prefix: String::new(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    all.objects
        .into_iter()
        .map(|o| o.name)
        .filter(|n| {
            n.starts_with("dataflux-tmp/")
                || ["claims/", "commits/", "clock/", "final.json"]
                    .iter()
                    .any(|p| n.starts_with(&format!("out/_dataflux/{run}/{p}")))
        })
        .collect()
}

/// Commits of the run so far.
pub async fn commits(store: &Arc<dyn Store>, run: &str) -> usize {
    dataflux::list(
        store,
        &format!("out/_dataflux/{run}/commits/"),
        &dataflux::ListOptions {
            temp_prefix: String::new(),
            ..Default::default()
        },
    )
    .await
    .map(|l| l.objects.len())
    .unwrap_or(0)
}

/// Waits until the run has at least `n` commits.
pub async fn wait_for_commits(store: &Arc<dyn Store>, run: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while commits(store, run).await < n {
        assert!(Instant::now() < deadline, "never reached {n} commits");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A store that answers every GET of an object under `prefix` with HTTP 503 while `failing`
/// is set (as GCS does during an incident), and forwards everything else.
#[derive(Debug)]
pub struct Outage {
    pub inner: Arc<dyn Store>,
    pub prefix: String,
    pub failing: AtomicBool,
    pub until: std::sync::Mutex<Option<Instant>>,
}

impl Outage {
    pub fn for_secs(inner: Arc<dyn Store>, prefix: &str, secs: f64) -> Arc<Self> {
        Arc::new(Self {
            inner,
            prefix: prefix.into(),
            failing: AtomicBool::new(true),
            until: std::sync::Mutex::new(Some(Instant::now() + Duration::from_secs_f64(secs))),
        })
    }
    fn down(&self) -> bool {
        let over = self
            .until
            .lock()
            .unwrap()
            .is_some_and(|t| Instant::now() >= t);
        if over {
            self.failing.store(false, Ordering::SeqCst);
        }
        self.failing.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for Outage {
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn stats(&self) -> &Stats {
        self.inner.stats()
    }
    async fn list_page(&self, req: PageRequest<'_>) -> dataflux::Result<Page> {
        self.inner.list_page(req).await
    }
    async fn get(&self, name: &str, range: Option<Range<u64>>) -> dataflux::Result<Bytes> {
        if name.starts_with(&self.prefix) && self.down() {
            return Err(dataflux::Error::Request {
                operation: Operation::Get,
                location: self.inner.object_url(name),
                status: Some(503),
                transient: true,
                message: "Service Unavailable".into(),
            });
        }
        self.inner.get(name, range).await
    }
    async fn head(&self, name: &str) -> dataflux::Result<ObjectMeta> {
        self.inner.head(name).await
    }
    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> dataflux::Result<ObjectMeta> {
        self.inner.put(name, data, mode).await
    }
    async fn delete(&self, name: &str) -> dataflux::Result<()> {
        self.inner.delete(name).await
    }
}

/// A store whose first GET of each object under `prefix` returns the body cut short (a
/// connection dropped mid-body that still looked complete), then the whole body.
#[derive(Debug)]
pub struct ShortOnce {
    pub inner: Arc<dyn Store>,
    pub prefix: String,
    pub seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

#[async_trait]
impl Store for ShortOnce {
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn stats(&self) -> &Stats {
        self.inner.stats()
    }
    async fn list_page(&self, req: PageRequest<'_>) -> dataflux::Result<Page> {
        self.inner.list_page(req).await
    }
    async fn get(&self, name: &str, range: Option<Range<u64>>) -> dataflux::Result<Bytes> {
        let body = self.inner.get(name, range).await?;
        let first =
            name.starts_with(&self.prefix) && self.seen.lock().unwrap().insert(name.to_string());
        Ok(if first && body.len() > 1 {
            body.slice(..body.len() / 2)
        } else {
            body
        })
    }
    async fn head(&self, name: &str) -> dataflux::Result<ObjectMeta> {
        self.inner.head(name).await
    }
    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> dataflux::Result<ObjectMeta> {
        self.inner.put(name, data, mode).await
    }
    async fn delete(&self, name: &str) -> dataflux::Result<()> {
        self.inner.delete(name).await
    }
}
