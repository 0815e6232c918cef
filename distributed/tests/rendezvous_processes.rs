//! Several ranks as separate processes (`rendezvous-probe`), on the local filesystem and on
//! GCS (fake-gcs-server): shared listing, key-value, gather, barrier, cleanup; a rank that
//! never arrives; ranks that crash and restart.
//!
//! The GCS tests need `STORAGE_EMULATOR_HOST` (`bash .ci/test` starts the emulator); they
//! fail without it unless `DATAFLUX_SKIP_EMULATOR=1`, in which case they say they skip.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use dataflux::{ListOptions, Location};
use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_rendezvous-probe");
const BUCKET: &str = "dataflux-distributed-tests";

/// A run id unique to this test process and call.
fn run_id(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{test}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The emulator's URL, `None` (after saying so) when skipping, or a failed test.
fn emulator() -> Option<String> {
    match std::env::var("STORAGE_EMULATOR_HOST") {
        Ok(host) if !host.is_empty() => Some(host),
        _ if std::env::var("DATAFLUX_SKIP_EMULATOR").as_deref() == Ok("1") => {
            eprintln!("skipping: STORAGE_EMULATOR_HOST is not set and DATAFLUX_SKIP_EMULATOR=1");
            None
        }
        _ => panic!(
            "STORAGE_EMULATOR_HOST is not set: start fake-gcs-server (`bash .ci/test` starts it), \
             e.g. fake-gcs-server -scheme http -host 127.0.0.1 -port 4443 -backend memory \
             -external-url http://127.0.0.1:4443 and export STORAGE_EMULATOR_HOST=http://127.0.0.1:4443; \
             or set DATAFLUX_SKIP_EMULATOR=1 to skip the GCS tests"
        ),
    }
}

/// `gs://<test bucket>/<prefix>`, creating the bucket if needed; `None` when skipping.
async fn gcs_url(prefix: &str) -> Option<String> {
    let host = emulator()?;
    let host = if host.contains("://") {
        host
    } else {
        format!("http://{host}")
    };
    let response = reqwest::Client::new()
        .post(format!("{}/storage/v1/b", host.trim_end_matches('/')))
        .header("content-type", "application/json")
        .body(format!(r#"{{"name":"{BUCKET}"}}"#))
        .send()
        .await
        .expect("emulator reachable");
    let status = response.status().as_u16();
    assert!(
        status == 200 || status == 409,
        "creating bucket {BUCKET}: HTTP {status}"
    );
    Some(format!("gs://{BUCKET}/{prefix}"))
}

fn probe(url: &str, run: &str, rank: usize, world: usize, extra: &[&str]) -> std::process::Child {
    Command::new(PROBE)
        .args(["--url", url, "--run-id", run])
        .args(extra)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("RUST_BACKTRACE", "0")
        .env_remove("LOCAL_RANK")
        .env_remove("LOCAL_WORLD_SIZE")
        .env_remove("GROUP_RANK")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rendezvous-probe")
}

fn finish(child: std::process::Child) -> Output {
    child.wait_with_output().expect("wait for rendezvous-probe")
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "probe failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad probe output {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Objects left under the run's rendezvous folder.
async fn leftovers(url: &str, run: &str) -> Vec<String> {
    let location = Location::parse(url).unwrap();
    let store = location.open_for_write().await.unwrap();
    let root = format!("{}dataflux-tmp/rendezvous/{run}/", location.prefix);
    let options = ListOptions::default().with_temp_prefix(String::new());
    let listing = dataflux::list(&store, &root, &options).await.unwrap();
    listing.objects.into_iter().map(|o| o.name).collect()
}

async fn all_ranks_agree(url: &str) {
    let run = run_id("agree");
    let world = 4;
    let children: Vec<_> = (0..world)
        .map(|r| probe(url, &run, r, world, &[]))
        .collect();
    let reports: Vec<Value> = children
        .into_iter()
        .map(finish)
        .map(|o| report(&o))
        .collect();
    let gather: Vec<String> = (0..world).map(|r| format!("rank {r} attempt 0")).collect();
    for (rank, report) in reports.iter().enumerate() {
        assert_eq!(report["rank"], rank);
        assert_eq!(report["listing"], "listing by rank 0 attempt 0");
        assert_eq!(
            report["neighbour"],
            format!("hello from {}", (rank + 1) % world)
        );
        assert_eq!(report["gather"], serde_json::json!(gather));
    }
    assert_eq!(
        leftovers(url, &run).await,
        Vec::<String>::new(),
        "rank 0 cleans up"
    );
}

async fn absent_rank_is_named(url: &str) {
    let run = run_id("absent");
    let children: Vec<_> = [0, 1, 3]
        .into_iter()
        .map(|r| probe(url, &run, r, 4, &["--timeout-ms", "1500"]))
        .collect();
    for out in children.into_iter().map(finish) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("all_gather \"summary\" timed out")
                && stderr.contains("ranks [2] of 4 never arrived"),
            "{stderr}"
        );
    }
}

async fn restarted_ranks_get_the_same_answers(url: &str) {
    let run = run_id("restart");
    let world = 3;
    let steady = probe(url, &run, 2, world, &[]);
    let crashing: Vec<_> = [0, 1]
        .into_iter()
        .map(|r| {
            probe(
                url,
                &run,
                r,
                world,
                &["--crash-after", "gather", "--attempt", "0"],
            )
        })
        .collect();
    for out in crashing.into_iter().map(finish) {
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Rank 2 is now waiting at the barrier; ranks 0 and 1 come back as attempt 1.
    let restarted: Vec<_> = [0, 1]
        .into_iter()
        .map(|r| probe(url, &run, r, world, &["--attempt", "1"]))
        .collect();
    let mut reports: Vec<Value> = restarted
        .into_iter()
        .map(finish)
        .map(|o| report(&o))
        .collect();
    reports.push(report(&finish(steady)));
    for report in &reports {
        assert_eq!(
            report["listing"], "listing by rank 0 attempt 0",
            "not listed twice"
        );
        assert_eq!(
            report["gather"],
            serde_json::json!(["rank 0 attempt 0", "rank 1 attempt 0", "rank 2 attempt 0"]),
            "first posts win"
        );
    }
    assert_eq!(leftovers(url, &run).await, Vec::<String>::new());
}

fn local_url(dir: &tempfile::TempDir) -> String {
    format!("file://{}/", dir.path().display())
}

#[tokio::test]
async fn local_all_ranks_agree() {
    let dir = tempfile::tempdir().unwrap();
    all_ranks_agree(&local_url(&dir)).await;
}

#[tokio::test]
async fn local_absent_rank_is_named() {
    let dir = tempfile::tempdir().unwrap();
    absent_rank_is_named(&local_url(&dir)).await;
}

#[tokio::test]
async fn local_restarted_ranks_get_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    restarted_ranks_get_the_same_answers(&local_url(&dir)).await;
}

#[tokio::test]
async fn gcs_all_ranks_agree() {
    if let Some(url) = gcs_url("agree").await {
        all_ranks_agree(&url).await;
    }
}

#[tokio::test]
async fn gcs_absent_rank_is_named() {
    if let Some(url) = gcs_url("absent").await {
        absent_rank_is_named(&url).await;
    }
}

#[tokio::test]
async fn gcs_restarted_ranks_get_the_same_answers() {
    if let Some(url) = gcs_url("restart").await {
        restarted_ranks_get_the_same_answers(&url).await;
    }
}
