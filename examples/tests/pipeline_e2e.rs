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
    let store: Arc<dyn Store> = Arc::new(GcsStore::connect(&name).await.expect("connect"));
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
    Command::new(BIN)
        .args([
            "--input",
            &format!("gs://{bucket}/imgs"),
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
            "--part-size",
            "8",
        ])
        .args([
            "--decode-threads",
            "1",
            "--quiet",
            "--rendezvous-timeout-secs",
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

/// Reads every rank's results and errors and checks the union.
async fn check_outputs(
    store: &Arc<dyn Store>,
    out: &str,
    run_id: &str,
    world: usize,
    good: &[(String, Vec<u8>)],
    bad: &[(String, Vec<u8>)],
    expected: &HashMap<String, String>,
) {
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut errors: BTreeSet<String> = BTreeSet::new();
    for rank in 0..world {
        let results = store
            .get(&format!("{out}/results_{run_id}_shard_{rank}.csv"), None)
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
            .get(&format!("{out}/errors_{run_id}_shard_{rank}.csv"), None)
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
    // Nothing temporary left: composites, rendezvous keys, parts.
    let opts = ListOptions {
        temp_prefix: String::new(),
        ..Default::default()
    };
    let leftovers: Vec<String> = list(store, "", &opts)
        .await
        .expect("list bucket")
        .objects
        .into_iter()
        .map(|o| o.name)
        .filter(|n| n.contains("dataflux-tmp/") || n.contains("/parts/"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ranks_classify_everything_once_and_survive_a_kill() {
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
    check_outputs(&store, "out1", "run-one", 3, &good, &bad, &expected).await;
    let summary: serde_json::Value = serde_json::from_slice(
        &store
            .get("out1/_job_summary_run-one.json", None)
            .await
            .expect("job summary"),
    )
    .expect("json");
    assert_eq!(summary["images_ok"], good.len() as u64);
    assert_eq!(summary["images_failed"], bad.len() as u64);

    // A rerun of the finished job does nothing.
    let again = spawn_rank(&bucket, "out1", "run-one", 0, 1, 0)
        .wait_with_output()
        .expect("rerun");
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("Nothing to do"));

    // 2. Kill rank 1 with SIGKILL after its first committed part, restart it.
    let mut children: Vec<Option<Child>> = (0..3)
        .map(|r| Some(spawn_rank(&bucket, "out2", "run-two", r, 3, 150)))
        .collect();
    let parts = "out2/_dataflux/run-two/parts/rank-00001/";
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let opts = ListOptions {
            temp_prefix: String::new(),
            ..Default::default()
        };
        let committed = list(&store, parts, &opts)
            .await
            .expect("list parts")
            .objects
            .len();
        if committed >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "rank 1 never committed a part");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    check_outputs(&store, "out2", "run-two", 3, &good, &bad, &expected).await;
    let rank1: serde_json::Value = serde_json::from_slice(
        &store
            .get("out2/_SUCCESS_run-two_shard_1.json", None)
            .await
            .expect("success"),
    )
    .expect("json");
    assert!(
        rank1["resumed"].as_u64().unwrap_or(0) >= 8,
        "the restart resumed after committed parts: {rank1}"
    );
}
