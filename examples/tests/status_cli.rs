//! `dataflux status` on a running 3-rank `batch-inference` job: what it reports is checked
//! against the ranks' own logs (who holds what) and the plan (how many chunks, images), and
//! against the job's summary once it finishes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn status(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dataflux"))
        .arg("status")
        .arg(out)
        .args(extra)
        .env_remove("DATAFLUX_RUN_ID")
        .output()
        .expect("run dataflux status")
}

fn status_json(out: &Path, extra: &[&str]) -> Value {
    let run = status(out, &[&["--json"], extra].concat());
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).expect("status --json is one JSON object")
}

fn rank(input: &Path, out: &Path, rank: usize, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .args([
            "--model",
            root().join("inference/fixtures/tiny-vit").to_str().unwrap(),
        ])
        .args(["--device", "cpu", "--input"])
        .arg(input)
        .arg("--output")
        .arg(out)
        .args([
            "--chunk-size",
            "2",
            "--batch-size",
            "1",
            "--batch-delay-ms",
            "500",
        ])
        .args(["--lease-secs", "20", "--log-format", "json"])
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", "3")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("DATAFLUX_RUN_ID")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start a rank")
}

#[test]
fn status_reports_a_running_three_rank_job_and_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // 24 images: the six samples four times over.
    let samples = root().join("examples/samples");
    for copy in 0..4 {
        for entry in std::fs::read_dir(&samples).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            std::fs::copy(&path, input.join(format!("{copy}_{name}"))).unwrap();
        }
    }
    let out = dir.path().join("out");

    // No run yet: exit 1, saying so.
    let none = status(&out, &[]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no batch-inference run"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );

    let logs: Vec<PathBuf> = (0..3)
        .map(|r| dir.path().join(format!("rank{r}.log")))
        .collect();
    let mut ranks: Vec<Child> = (0..3).map(|r| rank(&input, &out, r, &logs[r])).collect();

    // Watch until the job is half-way: something committed, something claimed.
    let started = Instant::now();
    let mut seen: Vec<Value> = Vec::new();
    let mut lapsed_view = None;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job never showed both commits and claims: {seen:?}"
        );
        if !out.join("_dataflux").exists() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let listed = status(&out, &["--json"]);
        if listed.status.code() != Some(0) {
            // The plan is not written yet.
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let s: Value = serde_json::from_slice(&listed.stdout).unwrap();
        if !s["finished"].is_null() {
            break;
        }
        let claimed = s["claimed"].as_array().unwrap().len();
        if s["committed"].as_u64().unwrap() > 0 && claimed > 0 {
            // The same moment read with a lease of a millisecond: every claim has lapsed.
            lapsed_view = Some(status_json(&out, &["--lease-secs", "0.001"]));
            seen.push(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for child in &mut ranks {
        let code = child.wait().unwrap().code();
        assert_eq!(code, Some(0));
    }

    // Who holds what, by the ranks' own logs.
    let mut holders: Vec<(String, u64)> = Vec::new();
    for (r, log) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(log).unwrap();
        let holder = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "claiming chunks")
            .and_then(|v| v["holder"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("rank {r} logged no holder: {text}"));
        holders.push((holder, r as u64));
    }
    let s = seen.pop().expect("a running view");
    assert_eq!(s["chunks"], 12);
    assert_eq!(s["images"], 24);
    assert_eq!(s["chunk_size"], 2);
    let claimed = s["claimed"].as_array().unwrap();
    let lapsed = s["lapsed"].as_array().unwrap();
    let committed = s["committed"].as_u64().unwrap();
    let free = s["free"].as_u64().unwrap();
    assert_eq!(
        committed + claimed.len() as u64 + lapsed.len() as u64 + free,
        12,
        "{s}"
    );
    assert!(lapsed.is_empty(), "a 20 s lease cannot lapse here: {s}");
    // Every 2-image chunk committed holds 2 images, all with a row.
    assert_eq!(
        s["images_committed"].as_u64().unwrap(),
        2 * committed,
        "{s}"
    );
    assert_eq!(s["rows"].as_u64().unwrap(), 2 * committed, "{s}");
    assert_eq!(s["bad"], 0);
    let mut chunks = HashSet::new();
    for c in claimed {
        let holder = c["holder"].as_str().unwrap();
        let rank = c["rank"].as_u64().unwrap();
        assert!(
            holders.contains(&(holder.to_string(), rank)),
            "claim {c} is not one of the ranks' ({holders:?})"
        );
        assert!(c["lease_age_secs"].as_f64().unwrap() < 20.0, "{c}");
        assert!(chunks.insert(c["chunk"].as_u64().unwrap()), "{s}");
    }
    let l = lapsed_view.unwrap();
    assert!(l["claimed"].as_array().unwrap().is_empty(), "{l}");
    assert!(!l["lapsed"].as_array().unwrap().is_empty(), "{l}");

    // Finished: the summary's numbers, in JSON and in words.
    let done = status_json(&out, &[]);
    assert_eq!(done["finished"]["images"], 24, "{done}");
    assert_eq!(done["finished"]["images_ok"], 24, "{done}");
    assert_eq!(done["committed"], 12, "{done}");
    assert_eq!(done["free"], 0, "{done}");
    let text = status(&out, &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(": finished"), "{text}");
    assert!(text.contains("24 images: 24 with results, 0 bad"), "{text}");
}
