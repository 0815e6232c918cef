//! `batch-inference` on local directories: the sample run, and configuration errors, each
//! exiting 2 before any work with a message naming the flag.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn job(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .args([
            "--model",
            root().join("inference/fixtures/tiny-vit").to_str().unwrap(),
        ])
        .args(["--device", "cpu", "--output", out.to_str().unwrap()])
        .args(extra)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("DATAFLUX_RUN_ID")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run batch-inference")
}

#[test]
fn the_sample_images_are_classified_once_and_a_rerun_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let first = job(&out, &["--run-id", "samples"]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let csv = std::fs::read_to_string(out.join("results_samples_shard_0.csv")).unwrap();
    let ids: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "000000000139",
            "000000000285",
            "000000000632",
            "000000000724",
            "000000000776",
            "000000000785"
        ]
    );
    assert!(out.join("_job_summary_samples.json").is_file());
    let again = job(&out, &["--run-id", "samples"]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("Nothing to do"));
}

#[test]
fn configuration_errors_exit_2_naming_the_flag_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let unwritable = file.join("out");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--device", "tpu:3"], "--device"),
        (vec!["--dtype", "f64"], "--dtype"),
        (vec!["--format", "xml"], "--format"),
        (vec!["--input", "ftp://host/imgs"], "--input"),
        (vec!["--input", "/no/such/images"], "--input"),
        (vec!["--model", "/no/such/checkpoint"], "--model"),
        (vec!["--model", "./missing-dir"], "--model"),
        (vec!["--output", unwritable.to_str().unwrap()], "--output"),
        (vec!["--chunk-size", "0"], "--chunk-size"),
        (vec!["--run-id", "a/b"], "--run-id"),
    ];
    for (args, flag) in cases {
        let run = job(&out, &args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?} names {flag}: {stderr}");
    }
    // Nothing was written for any of them.
    assert!(
        !out.join("_dataflux").exists()
            || std::fs::read_dir(out.join("_dataflux")).unwrap().count() == 0
    );
}

#[test]
fn json_logs_carry_severity_message_timestamp_rank_and_run_id_on_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .args([
            "--model",
            root().join("inference/fixtures/tiny-vit").to_str().unwrap(),
        ])
        .args([
            "--device",
            "cpu",
            "--output",
            out.to_str().unwrap(),
            "--run-id",
            "logs",
        ])
        .env("DATAFLUX_LOG_FORMAT", "json")
        .env("RANK", "0")
        .env("WORLD_SIZE", "1")
        .env_remove("JOB_COMPLETION_INDEX")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3, "{stderr}");
    let mut with_run = 0;
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["severity", "message", "timestamp", "rank"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        with_run += usize::from(v["run_id"] == "logs");
    }
    // Every line once the run id is known (all but the first few set-up lines).
    assert!(with_run + 2 >= lines.len(), "{stderr}");
}

#[test]
fn a_dry_run_prints_the_plan_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = job(&out, &["--dry-run"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("objects") && stderr.contains("           6"),
        "{stderr}"
    );
    assert!(stderr.contains("GCS classes A"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}
