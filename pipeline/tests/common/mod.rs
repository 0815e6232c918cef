//! Test set-up shared by the job tests: a fast deterministic model, inputs with known rows,
//! a store that fails on a schedule, and checks of the outputs' exact contents.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataflux::store::hooked::{Answer, Call, HookStore};
use dataflux::{Location, PutMode, Store};
use dataflux_distributed::Topology;
use dataflux_pipeline::{
    BatchModel, Column, ColumnKind, Job, JobSpec, ModelError, Outcome, Rejection, Row, Stores,
    Value,
};
use tokio_util::sync::CancellationToken;

/// Rows are the CRC32C of each object's bytes. Bytes starting `BAD` are rejected, `PANIC`
/// panics in preprocessing; `delay` is spent per batch; `panic_in_infer` panics there;
/// `concurrency` is what it asks of the job, and `max_inflight` how many batches it saw at
/// once.
#[derive(Default)]
pub struct Checksum {
    pub delay: Duration,
    pub panic_in_infer: bool,
    pub concurrency: usize,
    pub inflight: AtomicUsize,
    pub max_inflight: AtomicUsize,
}

impl Checksum {
    pub fn fast() -> Arc<Self> {
        Self::slow(Duration::ZERO)
    }
    pub fn slow(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            delay,
            concurrency: 1,
            ..Self::default()
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
        let now = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inflight.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        Ok(batch
            .into_iter()
            .map(|c| vec![Value::Text(format!("{c:08x}"))])
            .collect())
    }
    fn concurrency(&self) -> usize {
        self.concurrency
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
    let (good, bad) = fill(&store, name, n).await;
    (store, good, bad)
}

/// Writes `n` good images and three bad ones under `imgs/`; returns the expected rows and
/// bad objects.
pub async fn fill(
    store: &Arc<dyn Store>,
    name: &str,
    n: usize,
) -> (BTreeMap<String, String>, BTreeSet<String>) {
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
    (good, bad)
}

/// A spec with small chunks and short leases.
pub fn spec(name: &str, run: &str) -> JobSpec {
    JobSpec::default()
        .with_input(Location::parse(&format!("memory://{name}/imgs")).unwrap())
        .with_output(Location::parse(&format!("memory://{name}/out")).unwrap())
        .with_run_id(Some(run.into()))
        .with_chunk_size(8)
        .with_batch_size(4)
        .with_lease(Duration::from_millis(800))
        .with_poll(Duration::from_millis(50))
        .with_grace(Duration::from_secs(5))
        .with_store_deadline(Duration::from_secs(60))
        .with_wait_timeout(Duration::from_secs(60))
        .with_decode_threads(1)
}

/// Rank `rank` of `world` with `model`, reading and writing `store`.
pub async fn run_rank<M: BatchModel>(
    store: &Arc<dyn Store>,
    spec: &JobSpec,
    model: Arc<M>,
    rank: usize,
    world: usize,
) -> dataflux_pipeline::Result<Outcome> {
    let topology = Topology::new(rank, world).unwrap();
    Job::run_on(
        stores(store),
        spec,
        model,
        &topology,
        CancellationToken::new(),
    )
    .await
}

/// All ranks of one attempt, concurrently; each must end without error.
pub async fn attempt<M: BatchModel>(
    store: &Arc<dyn Store>,
    spec: &JobSpec,
    model: Arc<M>,
    world: usize,
) -> Vec<Outcome> {
    let runs = (0..world).map(|r| run_rank(store, spec, model.clone(), r, world));
    futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.expect("rank finished"))
        .collect()
}

/// One rank of one with `model`, reading through `input` (a store over `output`'s, faulty or
/// counting) and writing `output`.
pub async fn run_reading_with<M: BatchModel>(
    input: Arc<dyn Store>,
    output: &Arc<dyn Store>,
    spec: &JobSpec,
    model: Arc<M>,
) -> dataflux_pipeline::Result<Outcome> {
    let stores = Stores {
        input,
        output: output.clone(),
    };
    Job::run_on(
        stores,
        spec,
        model,
        &Topology::single(),
        CancellationToken::new(),
    )
    .await
}

/// The outcome of a rank that finished.
pub fn finished(o: &Outcome) -> &dataflux_pipeline::Finished {
    match o {
        Outcome::Finished(f) => f,
        other => panic!("expected Finished, got {other:?}"),
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
        &dataflux::ListOptions::default().with_temp_prefix(String::new()),
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
        &dataflux::ListOptions::default().with_temp_prefix(String::new()),
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

/// `inner`, but every GET of an object under `prefix` answers HTTP 503 for the first `secs`
/// seconds (as GCS does during an incident).
pub fn outage(inner: Arc<dyn Store>, prefix: &str, secs: f64) -> Arc<dyn Store> {
    let (prefix, until) = (
        prefix.to_string(),
        Instant::now() + Duration::from_secs_f64(secs),
    );
    Arc::new(HookStore::new(inner, move |call| match call {
        Call::Get(name) if name.starts_with(&prefix) && Instant::now() < until => {
            Answer::status(call, 503)
        }
        _ => Answer::Forward,
    }))
}

/// `inner`, but the first GET of each object under `prefix` returns its body cut short (a
/// connection dropped mid-body that still looked complete), the next ones the whole body.
pub fn short_once(inner: Arc<dyn Store>, prefix: &str) -> Arc<dyn Store> {
    let prefix = prefix.to_string();
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    Arc::new(HookStore::new(inner, move |call| match call {
        Call::Get(name)
            if name.starts_with(&prefix) && seen.lock().unwrap().insert(name.to_string()) =>
        {
            Answer::CutBody
        }
        _ => Answer::Forward,
    }))
}
