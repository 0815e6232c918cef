//! `batch-inference` on local directories: the sample run, and configuration errors, each
//! exiting 2 before any work with a message naming the flag.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tiny ViT over the samples on the CPU into `out`, with `extra` flags, one rank.
fn tiny_job(out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_batch-inference"));
    command
        .args([
            "--model",
            root().join("inference/fixtures/tiny-vit").to_str().unwrap(),
        ])
        .args(["--device", "cpu", "--output", out.to_str().unwrap()])
        .args(extra)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("DATAFLUX_RUN_ID");
    command
}

/// [`tiny_job`], warnings only.
fn job(out: &Path, extra: &[&str]) -> std::process::Output {
    tiny_job(out, extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run batch-inference")
}

/// [`tiny_job`], logging as the binary does by default (no RUST_LOG): what a user sees.
fn job_as_logged(out: &Path, extra: &[&str]) -> std::process::Output {
    tiny_job(out, extra)
        .env_remove("RUST_LOG")
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
fn without_input_the_samples_are_looked_for_and_not_finding_them_exits_2_saying_where() {
    // Outside the checkout, with no samples next to the binary (target/debug/).
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .args(["--device", "cpu", "--output"])
        .arg(dir.path().join("out"))
        .current_dir(dir.path())
        .env_remove("DATAFLUX_INPUT")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run batch-inference");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--input is not given")
            && stderr.contains("share/dataflux/samples")
            && stderr.contains("examples/samples in"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists());
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

fn embed_job(out: &Path, model: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .args(["--task", "embed", "--model"])
        .arg(root().join("inference/fixtures").join(model))
        .args(["--device", "cpu", "--output", out.to_str().unwrap()])
        .args(extra)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("DATAFLUX_RUN_ID")
        .env_remove("DATAFLUX_TASK")
        .env_remove("DATAFLUX_FORMAT")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run batch-inference")
}

/// `(image_id, object, embedding)` of every row of a Parquet results file, read with the
/// `parquet` crate; the schema is checked column by column.
fn read_embeddings(path: &Path, dim: usize) -> Vec<(String, String, Vec<f32>)> {
    use arrow_array::{Array, FixedSizeListArray, Float32Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["image_id", "object", "embedding"]);
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let objects = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let emb = batch
            .column(2)
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .expect("embedding is a fixed-size list");
        assert_eq!(emb.value_length() as usize, dim);
        for i in 0..batch.num_rows() {
            let v = emb.value(i);
            let v = v.as_any().downcast_ref::<Float32Array>().unwrap();
            assert_eq!(v.null_count(), 0);
            rows.push((
                ids.value(i).to_string(),
                objects.value(i).to_string(),
                v.values().to_vec(),
            ));
        }
    }
    rows
}

fn reference_embeddings(model: &str) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(root().join("inference/fixtures/clip_expected.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let prefix = format!("embeds.{model}.samples/");
    tensors
        .names()
        .into_iter()
        .filter_map(|name| {
            let file = name.strip_prefix(&prefix)?;
            let t = tensors.tensor(name).ok()?;
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let stem = file.rsplit_once('.').map_or(file, |(s, _)| s).to_string();
            Some((stem, v.into_iter().map(|x| x / n).collect()))
        })
        .collect()
}

#[test]
fn the_sample_images_are_embedded_to_parquet_as_transformers_embeds_them() {
    for (model, dim) in [("tiny-clip", 16), ("tiny-clip-vision", 24)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let run = embed_job(&out, model, &["--run-id", "emb"]);
        assert_eq!(
            run.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        // Parquet is the default for embeddings; nothing else is written as results.
        let rows = read_embeddings(&out.join("results_emb_shard_0.parquet"), dim);
        assert!(!out.join("results_emb_shard_0.csv").exists());
        let reference = reference_embeddings(model);
        let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            ids,
            reference.keys().map(String::as_str).collect::<Vec<_>>()
        );
        // Lossless samples (PNG, GIF) decode to PIL's pixels: within 1e-4. JPEGs too when
        // libjpeg-turbo decodes them (feature turbojpeg); zune-jpeg, the default, is a level
        // off here and there: the same direction.
        let exact_jpeg = dataflux_inference::preprocess::scaled_jpeg_decoding();
        let mut worst = 0f32;
        for (id, object, v) in &rows {
            let lossless = !object.ends_with(".jpg") || exact_jpeg;
            assert!(object.ends_with(&format!("{id}.jpg")) || object.contains(id.as_str()));
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{id}: norm {norm}");
            let d = v
                .iter()
                .zip(&reference[id])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            eprintln!("{model} {id}: max |ours - transformers| = {d:.2e}");
            if lossless {
                worst = worst.max(d);
            } else {
                let cos: f32 = v.iter().zip(&reference[id]).map(|(a, b)| a * b).sum();
                assert!(d <= 5e-3 && cos > 0.9999, "{model} {id}: {d}, cosine {cos}");
            }
        }
        assert!(
            worst <= 1e-4,
            "{model}: lossless embeddings differ by up to {worst}"
        );
    }
}

#[test]
fn a_task_that_does_not_fit_the_checkpoint_exits_2_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A CLIP checkpoint asked to classify.
    let run = job(&out, &["--run-id", "t"]);
    assert_eq!(run.status.code(), Some(0));
    let wrong = Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .args(["--task", "classify", "--model"])
        .arg(root().join("inference/fixtures/tiny-clip"))
        .args(["--device", "cpu", "--output", out.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("--task") && err.contains("classify") && err.contains("CLIPModel"),
        "{err}"
    );
    // A ViT classifier asked to embed.
    let wrong = embed_job(&out, "tiny-vit", &[]);
    assert_eq!(wrong.status.code(), Some(2));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("--task")
            && err.contains("embed")
            && err.contains("ViTForImageClassification"),
        "{err}"
    );
    assert!(!out.join("results_emb_shard_0.parquet").exists());
}

#[test]
fn a_checkpoint_from_a_bucket_url_is_fetched_into_the_cache_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    let url = format!(
        "file://{}",
        root()
            .join("inference/fixtures/tiny-clip")
            .canonicalize()
            .unwrap()
            .display()
    );
    let run = Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .args(["--task", "embed", "--model", &url, "--model-cache"])
        .arg(&cache)
        .args(["--device", "cpu", "--run-id", "bucket", "--output"])
        .arg(&out)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        read_embeddings(&out.join("results_bucket_shard_0.parquet"), 16).len(),
        6
    );
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].join("model.safetensors").is_file());
}

#[test]
fn quiet_leaves_warnings_errors_and_the_final_summary() {
    let dir = tempfile::tempdir().unwrap();
    let run = job_as_logged(
        &dir.path().join("out"),
        &["--log-format", "text", "--quiet"],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains(" INFO "), "{stderr}");
    assert!(stderr.contains("6 images, 6 with results"), "{stderr}");
}

#[test]
fn json_logs_carry_a_progress_line_every_progress_secs() {
    let dir = tempfile::tempdir().unwrap();
    let run = job_as_logged(
        &dir.path().join("out"),
        &[
            "--log-format",
            "json",
            "--chunk-size",
            "2",
            "--batch-size",
            "1",
            "--batch-delay-ms",
            "400",
            "--progress-secs",
            "0.5",
        ],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("progress: "))
        })
        .collect();
    assert!(lines.len() >= 2, "{stderr}");
    let mut last_done = 0;
    for line in &lines {
        assert_eq!(line["images_total"], 6, "{line}");
        assert_eq!(line["chunks_total"], 3, "{line}");
        let done = line["images_done"].as_u64().unwrap();
        assert!(done >= last_done && done <= 6, "{line}");
        last_done = done;
        let chunks: u64 = [
            "chunks_free",
            "chunks_claimed",
            "chunks_lapsed",
            "chunks_committed",
        ]
        .iter()
        .map(|k| line[*k].as_u64().unwrap())
        .sum();
        assert_eq!(chunks, 3, "{line}");
    }
    // The final summary keeps its shape.
    assert!(stderr.contains("6 images, 6 with results"), "{stderr}");
}

#[test]
fn quiet_has_no_progress_lines() {
    let dir = tempfile::tempdir().unwrap();
    let run = job_as_logged(
        &dir.path().join("out"),
        &[
            "--log-format",
            "json",
            "--quiet",
            "--batch-size",
            "1",
            "--batch-delay-ms",
            "200",
            "--progress-secs",
            "0.2",
        ],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("progress: "), "{stderr}");
}

#[test]
fn a_model_in_an_unreachable_bucket_gives_up_at_store_deadline_secs_with_exit_75() {
    // A GCS endpoint on a closed port: the model cache's store retries for the job's
    // deadline (2 s here), not for the store's own default (120 s).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .args(["--model", "gs://models-bucket/tiny-vit/", "--model-cache"])
        .arg(dir.path().join("cache"))
        .args(["--device", "cpu", "--store-deadline-secs", "2", "--output"])
        .arg(dir.path().join("out"))
        .env("STORAGE_EMULATOR_HOST", format!("http://127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(75), "{err}");
    assert!(err.contains("deadline 2 s"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "gave up after {:?}, not at the 2 s deadline",
        started.elapsed()
    );
}
