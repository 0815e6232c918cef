//! The whole job against the GCS emulator with the tiny fixture model: 3 ranks as 3
//! processes, good and bad inputs, then a rank killed with SIGKILL mid-run and restarted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Cursor;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataflux::store::gcs::{emulator_endpoint, GcsStore};
use dataflux::{list, ListOptions, PutMode, Store};
use dataflux_inference::{Classifier, DeviceSpec, LoadOptions, ModelSource};

const BIN: &str = env!("CARGO_BIN_EXE_batch-inference");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_dir() -> PathBuf {
    repo().join("inference/fixtures/tiny-vit")
}

fn emulator() -> String {
    emulator_endpoint().unwrap_or_else(|| {
        panic!(
            "STORAGE_EMULATOR_HOST is not set: run `bash .ci/test`, or start fake-gcs-server \
             (-scheme http -host 127.0.0.1 -port 4443 -backend memory -external-url http://127.0.0.1:4443) \
             and export STORAGE_EMULATOR_HOST=http://127.0.0.1:4443"
        )
    })
}

async fn bucket(tag: &str) -> (String, Arc<dyn Store>) {
    let endpoint = emulator();
    let name = format!("e2e-{tag}-{}", std::process::id());
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .expect("emulator reachable");
    assert!(
        resp.status().is_success(),
        "create bucket: {}",
        resp.status()
    );
    let store: Arc<dyn Store> = dataflux::store::retrying::layered(
        Arc::new(GcsStore::connect(&name).await.expect("connect")),
        dataflux::RetryPolicy::default(),
    );
    (name, store)
}

/// A deterministic picture `i`: varied sizes, formats and colour modes.
fn picture(i: usize) -> (String, Vec<u8>) {
    let (w, h) = (17 + (i * 7) % 90, 13 + (i * 11) % 70);
    let rgb = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb([
            ((x as usize * (i + 3)) % 256) as u8,
            ((y as usize * (i + 5)) % 256) as u8,
            ((i * 37) % 256) as u8,
        ])
    });
    let mut buf = Cursor::new(Vec::new());
    let ext = match i % 4 {
        0 | 1 => {
            image::DynamicImage::ImageRgb8(rgb)
                .write_to(&mut buf, image::ImageFormat::Jpeg)
                .expect("jpeg");
            "jpg"
        }
        2 => {
            image::DynamicImage::ImageRgb8(rgb)
                .write_to(&mut buf, image::ImageFormat::Png)
                .expect("png");
            "png"
        }
        _ => {
            let gray = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
                image::Luma([((x + y) as usize * i % 256) as u8])
            });
            image::DynamicImage::ImageLuma8(gray)
                .write_to(&mut buf, image::ImageFormat::Png)
                .expect("gray png");
            "png"
        }
    };
    // Two folders, so that stems repeat across folders for a few images.
    let folder = if i % 50 == 7 { "b" } else { "a" };
    (format!("imgs/{folder}/{:012}.{ext}", i), buf.into_inner())
}

/// Inputs that must each produce an error row, never stop the job.
fn bad_inputs() -> Vec<(String, Vec<u8>)> {
    let jpeg = picture(0).1;
    let mut huge_png = Vec::new();
    huge_png.extend_from_slice(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR");
    huge_png.extend_from_slice(&100_000u32.to_be_bytes());
    huge_png.extend_from_slice(&100_000u32.to_be_bytes());
    huge_png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    vec![
        ("imgs/bad/empty.jpg".into(), Vec::new()),
        (
            "imgs/bad/truncated.jpg".into(),
            jpeg[..jpeg.len() / 3].to_vec(),
        ),
        (
            "imgs/bad/random.jpg".into(),
            (0..500u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        (
            "imgs/bad/readme.txt".into(),
            b"not an image, just text\n".to_vec(),
        ),
        ("imgs/bad/huge.png".into(), huge_png),
    ]
}

/// Unusual modes that must classify: the inference fixtures (grayscale, CMYK, RGBA, 16-bit,
/// palette, …) plus a 1×1 image.
fn unusual_inputs() -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("inference/fixtures/images");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("fixture images")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            (
                format!("imgs/modes/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect();
    let mut one = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(1, 1, image::Rgb([200, 10, 10])))
        .write_to(&mut one, image::ImageFormat::Png)
        .expect("1x1");
    out.push(("imgs/modes/one_by_one.png".into(), one.into_inner()));
    out
}

fn expected_labels(good: &[(String, Vec<u8>)]) -> HashMap<String, String> {
    let classifier = Classifier::load_blocking(
        &ModelSource::Local(model_dir()),
        &LoadOptions::default(),
        DeviceSpec::Cpu,
        None,
    )
    .expect("tiny model");
    let mut out = HashMap::new();
    for (name, bytes) in good {
        let prepared = classifier
            .preprocessor()
            .preprocess(bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let preds = classifier
            .classify(&[prepared], 2)
            .expect("classify")
            .remove(0);
        // Batching may move logits by float rounding: only compare clear winners.
        if preds[0].probability - preds[1].probability > 1e-3 {
            let stem = name
                .rsplit('/')
                .next()
                .unwrap()
                .rsplit_once('.')
                .map(|(s, _)| s.to_string())
                .unwrap();
            out.insert(format!("{name}|{stem}"), preds[0].label.clone());
        }
    }
    out
}

fn spawn_rank(
    bucket: &str,
    out: &str,
    run_id: &str,
    rank: usize,
    world: usize,
    delay_ms: u64,
) -> Child {
    spawn_env(bucket, "imgs", out, run_id, rank, world, delay_ms, &[])
}

#[allow(clippy::too_many_arguments)]
fn spawn_env(
    bucket: &str,
    input: &str,
    out: &str,
    run_id: &str,
    rank: usize,
    world: usize,
    delay_ms: u64,
    env: &[(&str, &str)],
) -> Child {
    Command::new(BIN)
        .envs(env.iter().copied())
        .args([
            "--input",
            &format!("gs://{bucket}/{input}"),
            "--output",
            &format!("gs://{bucket}/{out}"),
        ])
        .args([
            "--model",
            model_dir().to_str().unwrap(),
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--chunk-size",
            "8",
        ])
        .args([
            "--decode-threads",
            "1",
            "--lease-secs",
            "2",
            "--wait-timeout-secs",
            "120",
        ])
        .args(["--batch-delay-ms", &delay_ms.to_string()])
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("DATAFLUX_RUN_ID", run_id)
        .env("RUST_LOG", "warn")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn batch-inference")
}

fn wait_ok(child: Child, rank: usize) -> i32 {
    let out = child.wait_with_output().expect("wait");
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 3,
        "rank {rank} exited {code}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    code
}

async fn list_names(store: &Arc<dyn Store>, prefix: &str) -> Vec<String> {
    let opts = ListOptions::default().with_temp_prefix(String::new());
    list(store, prefix, &opts)
        .await
        .expect("list")
        .objects
        .into_iter()
        .map(|o| o.name)
        .collect()
}

/// Waits until the run has `n` commits.
async fn wait_for_commits(store: &Arc<dyn Store>, out: &str, run_id: &str, n: usize) {
    let commits = format!("{out}/_dataflux/{run_id}/commits/");
    let deadline = Instant::now() + Duration::from_secs(120);
    while list_names(store, &commits).await.len() < n {
        assert!(
            Instant::now() < deadline,
            "the run never committed {n} chunks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads every output shard's results and errors and checks the union: every good image
/// exactly once with its label, every bad input exactly once, no shard beyond the run's,
/// nothing temporary left. Returns the number of shards.
async fn check_outputs(
    store: &Arc<dyn Store>,
    out: &str,
    run_id: &str,
    good: &[(String, Vec<u8>)],
    bad: &[(String, Vec<u8>)],
    expected: &HashMap<String, String>,
) -> usize {
    let summary: serde_json::Value = serde_json::from_slice(
        &store
            .get(&format!("{out}/_job_summary_{run_id}.json"), None)
            .await
            .expect("job summary"),
    )
    .expect("json");
    assert_eq!(summary["images_ok"], good.len() as u64);
    assert_eq!(summary["images_failed"], bad.len() as u64);
    let shards = summary["shards"].as_u64().expect("shards") as usize;
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut errors: BTreeSet<String> = BTreeSet::new();
    for shard in 0..shards {
        let results = store
            .get(&format!("{out}/results_{run_id}_shard_{shard}.csv"), None)
            .await
            .expect("results file");
        let mut reader = csv::ReaderBuilder::new().from_reader(&results[..]);
        assert_eq!(
            reader.headers().expect("header").iter().collect::<Vec<_>>(),
            ["image_id", "classification"]
        );
        for r in reader.records() {
            let r = r.expect("row");
            rows.entry(r[0].to_string())
                .or_default()
                .push(r[1].to_string());
        }
        let errs = store
            .get(&format!("{out}/errors_{run_id}_shard_{shard}.csv"), None)
            .await
            .expect("errors file");
        let mut reader = csv::ReaderBuilder::new().from_reader(&errs[..]);
        for r in reader.records() {
            let r = r.expect("row");
            assert!(
                !r[1].is_empty() && !r[2].is_empty(),
                "error kind and message: {r:?}"
            );
            assert!(
                errors.insert(r[0].to_string()),
                "duplicate error row for {}",
                &r[0]
            );
        }
    }
    assert!(
        store
            .head(&format!("{out}/results_{run_id}_shard_{shards}.csv"))
            .await
            .is_err(),
        "no results beyond the run's {shards} shards"
    );
    // Every good image exactly once (stems repeat across folders: count them).
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for (name, _) in good {
        let stem = name
            .rsplit('/')
            .next()
            .unwrap()
            .rsplit_once('.')
            .unwrap()
            .0
            .to_string();
        *want.entry(stem).or_default() += 1;
    }
    let got: BTreeMap<String, usize> = rows.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    assert_eq!(got, want, "every good image exactly once");
    for (key, label) in expected {
        let stem = key.rsplit('|').next().unwrap();
        assert!(
            rows[stem].contains(label),
            "{key}: got {:?}, expected {label}",
            rows[stem]
        );
    }
    let bad_names: BTreeSet<String> = bad.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(errors, bad_names, "one error row per bad input");
    // Nothing temporary left: composites, claims, commits, clock probes.
    let leftovers: Vec<String> = list_names(store, "")
        .await
        .into_iter()
        .filter(|n| {
            n.contains("dataflux-tmp/")
                || ["claims/", "commits/", "clock/", "final.json"]
                    .iter()
                    .any(|p| n.starts_with(&format!("{out}/_dataflux/{run_id}/{p}")))
        })
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    shards
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranks_as_processes_classify_everything_once_through_kills_zombies_and_reshapes() {
    let (bucket, store) = bucket("job").await;
    let mut good: Vec<(String, Vec<u8>)> = (0..200).map(picture).collect();
    good.extend(unusual_inputs());
    let bad = bad_inputs();
    for (name, bytes) in good.iter().chain(&bad) {
        store
            .put(name, Bytes::from(bytes.clone()), PutMode::Overwrite)
            .await
            .expect("upload");
    }
    let expected = expected_labels(&good);
    assert!(
        expected.len() > 150,
        "most fixture labels are clear winners ({})",
        expected.len()
    );

    // 1. Three ranks, start to finish.
    let children: Vec<Child> = (0..3)
        .map(|r| spawn_rank(&bucket, "out1", "run-one", r, 3, 0))
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .enumerate()
        .map(|(r, c)| wait_ok(c, r))
        .collect();
    assert!(
        codes.contains(&3),
        "bad inputs give exit code 3 somewhere: {codes:?}"
    );
    assert_eq!(
        check_outputs(&store, "out1", "run-one", &good, &bad, &expected).await,
        3
    );

    // A rerun of the finished job does nothing, whatever the world size.
    let again = spawn_rank(&bucket, "out1", "run-one", 0, 1, 0)
        .wait_with_output()
        .expect("rerun");
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("Nothing to do"));

    // The same run id for another input: exit 2, naming what changed, before any work.
    let changed = spawn_env(&bucket, "imgs/a", "out1", "run-one", 0, 1, 0, &[])
        .wait_with_output()
        .expect("changed");
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert_eq!(changed.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("input") && stderr.contains("imgs/a/"),
        "{stderr}"
    );

    // 2. SIGKILL rank 1 of 3 after the run's first commits, restart it.
    let mut children: Vec<Option<Child>> = (0..3)
        .map(|r| Some(spawn_rank(&bucket, "out2", "run-two", r, 3, 150)))
        .collect();
    wait_for_commits(&store, "out2", "run-two", 3).await;
    let mut victim = children[1].take().expect("rank 1");
    victim.kill().expect("SIGKILL");
    let status = victim.wait().expect("reap");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL"
    );
    children[1] = Some(spawn_rank(&bucket, "out2", "run-two", 1, 3, 0));
    for (r, c) in children.into_iter().enumerate() {
        wait_ok(c.expect("child"), r);
    }
    check_outputs(&store, "out2", "run-two", &good, &bad, &expected).await;

    // 3. A zombie: two live processes of rank 0 of 1, the second started while the first
    // runs (the 0 of 2,000 rows).
    let first = spawn_rank(&bucket, "out3", "run-three", 0, 1, 20);
    wait_for_commits(&store, "out3", "run-three", 1).await;
    let second = spawn_rank(&bucket, "out3", "run-three", 0, 1, 20);
    wait_ok(first, 0);
    wait_ok(second, 0);
    check_outputs(&store, "out3", "run-three", &good, &bad, &expected).await;

    // 4. A resubmission with another world size while the old job still runs: 1 rank,
    // then 2 more ranks of a world of 2 started over it.
    let old = spawn_rank(&bucket, "out4", "run-four", 0, 1, 60);
    wait_for_commits(&store, "out4", "run-four", 2).await;
    let new: Vec<Child> = (0..2)
        .map(|r| spawn_rank(&bucket, "out4", "run-four", r, 2, 0))
        .collect();
    wait_ok(old, 0);
    for (r, c) in new.into_iter().enumerate() {
        wait_ok(c, r);
    }
    let shards = check_outputs(&store, "out4", "run-four", &good, &bad, &expected).await;
    assert!(shards == 1 || shards == 2, "{shards}");

    // 5. SIGTERM: the rank stops within its grace with the retry code; a rerun finishes.
    let mut child = spawn_rank(&bucket, "out5", "run-five", 0, 1, 100);
    wait_for_commits(&store, "out5", "run-five", 1).await;
    let asked = Instant::now();
    nix_kill(&child, "TERM");
    let status = child.wait().expect("reap");
    assert_eq!(status.code(), Some(75), "SIGTERM exits with the retry code");
    assert!(
        asked.elapsed() < Duration::from_secs(25),
        "within the grace"
    );
    wait_ok(spawn_rank(&bucket, "out5", "run-five", 0, 1, 0), 0);
    check_outputs(&store, "out5", "run-five", &good, &bad, &expected).await;
}

fn nix_kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for a child off the async runtime (the fault proxy runs on it).
async fn wait_off_runtime(child: Child) -> i32 {
    tokio::task::spawn_blocking(move || wait_ok(child, 0))
        .await
        .expect("waiter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_faults_cost_time_never_rows() {
    use dataflux::testing::{Fault, FaultProxy, FaultRule, RequestKind};
    let (bucket, store) = bucket("faults").await;
    let good: Vec<(String, Vec<u8>)> = (0..120).map(picture).collect();
    let bad = bad_inputs();
    for (name, bytes) in good.iter().chain(&bad) {
        store
            .put(name, Bytes::from(bytes.clone()), PutMode::Overwrite)
            .await
            .expect("upload");
    }
    let expected = expected_labels(&good);
    let upstream: std::net::SocketAddr = emulator()
        .trim_start_matches("http://")
        .parse()
        .expect("emulator address");

    // 1. A 12 s outage: every media request (images, composites, the run's own index and
    // manifests) answers 503. The store's retries ride it out: no error row, nothing lost.
    let outage = FaultProxy::start(
        upstream,
        1,
        vec![FaultRule {
            kinds: vec![RequestKind::Media],
            fault: Fault::Status(503),
            rate: 1.0,
            from: Duration::ZERO,
            until: Some(Duration::from_secs(12)),
        }],
    )
    .await
    .expect("proxy");
    let started = Instant::now();
    let url = outage.url();
    let child = spawn_env(
        &bucket,
        "imgs",
        "f1",
        "run-f1",
        0,
        1,
        0,
        &[("STORAGE_EMULATOR_HOST", &url)],
    );
    wait_off_runtime(child).await;
    assert!(
        started.elapsed() >= Duration::from_secs(12),
        "it waited the outage out"
    );
    assert!(outage.faults() > 0);
    check_outputs(&store, "f1", "run-f1", &good, &bad, &expected).await;

    // 2. Connections that accept a request and never answer (3 % of media, compose and
    // delete requests) and bodies cut short (5 % of media): timeouts turn them into retries.
    let flaky = FaultProxy::start(
        upstream,
        2,
        vec![
            FaultRule {
                kinds: vec![
                    RequestKind::Media,
                    RequestKind::Compose,
                    RequestKind::Delete,
                ],
                fault: Fault::Silent,
                rate: 0.03,
                from: Duration::ZERO,
                until: None,
            },
            FaultRule {
                kinds: vec![RequestKind::Media],
                fault: Fault::CutBody,
                rate: 0.08,
                from: Duration::ZERO,
                until: None,
            },
        ],
    )
    .await
    .expect("proxy");
    let url = flaky.url();
    let child = spawn_env(
        &bucket,
        "imgs",
        "f2",
        "run-f2",
        0,
        1,
        0,
        &[
            ("STORAGE_EMULATOR_HOST", &url),
            ("DATAFLUX_HTTP_IDLE_TIMEOUT_SECS", "1"),
            ("DATAFLUX_HTTP_ATTEMPT_TIMEOUT_SECS", "5"),
        ],
    );
    let finished = tokio::time::timeout(Duration::from_secs(240), wait_off_runtime(child)).await;
    assert!(finished.is_ok(), "the job hung");
    assert!(flaky.faults() > 0);
    check_outputs(&store, "f2", "run-f2", &good, &bad, &expected).await;
}
