//! `batch-inference --model <ONNX model>`: optimum export folders (ResNet and ConvNeXt
//! classify, DINOv2 embeds, SigLIP's every output), a bare `torch.onnx.export` file with
//! preprocessing flags and a labels file; rows checked against the PyTorch + transformers
//! references of `inference/fixtures/onnx/*/expected.json`. And what exits 2 before any work:
//! a folder nothing can run, no ONNX Runtime, an unusable library, an output that is not there,
//! a changed `model.onnx` under the same run id.
//!
//! Needs ONNX Runtime (`ORT_DYLIB_PATH` or the active Python environment's `onnxruntime`
//! wheel); `.ci/test` installs it.
#![cfg(feature = "onnx")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use parquet::file::reader::FileReader;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(path: &str) -> PathBuf {
    root().join("inference/fixtures").join(path)
}

fn job(out: &Path, model: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .arg("--model")
        .arg(model)
        .arg("--input")
        .arg(fixture("images"))
        .args(["--device", "cpu", "--output"])
        .arg(out)
        .args(extra)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("DATAFLUX_RUN_ID")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run batch-inference")
}

fn ok(run: &Output) {
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The JSON lines of a results file, by object file name.
fn rows(path: &Path) -> BTreeMap<String, serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            let object = row["object"].as_str().unwrap();
            let name = object.rsplit('/').next().unwrap().to_string();
            (name, row)
        })
        .collect()
}

fn expected(model: &str) -> serde_json::Value {
    let text = std::fs::read(fixture(&format!("onnx/{model}/expected.json"))).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// Images whose pixels are PIL's exactly (see inference/tests/onnx.rs): not 16-bit grey, which
/// PIL clips and we scale, nor the CMYK JPEG.
fn exact(file: &str) -> bool {
    !matches!(file, "gray16.png" | "cmyk.jpg")
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The labels the job writes are the top-1 PyTorch gives, on every exactly-decoded image; every
/// image has one row.
fn check_labels(model: &str, results: &BTreeMap<String, serde_json::Value>) {
    let want = expected(model);
    let top1 = want["top1"].as_object().unwrap();
    assert_eq!(results.len(), 13, "{model}: one row per image");
    for (file, label) in top1 {
        if exact(file) {
            assert_eq!(
                results[file]["classification"].as_str(),
                label.as_str(),
                "{model} {file}"
            );
        }
    }
}

#[test]
fn optimum_classifiers_label_photos_as_pytorch_does() {
    for model in ["resnet", "convnext"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let run = job(
            &out,
            &fixture(&format!("onnx/{model}")),
            &["--run-id", "r", "--format", "jsonl", "--top-k", "2"],
        );
        ok(&run);
        let results = rows(&out.join("results_r_shard_0.jsonl"));
        check_labels(model, &results);
        let row = &results["rgb.bmp"];
        let (s1, s2) = (
            row["score"].as_f64().unwrap(),
            row["score_2"].as_f64().unwrap(),
        );
        assert!(s1 >= s2 && s2 > 0.0 && row["label_2"].is_string(), "{row}");
    }
}

#[test]
fn dinov2_embeddings_are_pytorch_s_first_token_normalised_or_mean_pooled_raw() {
    let want = expected("dinov2");
    for (pooling, key, raw) in [("cls", "cls", false), ("mean", "mean", true)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut args = vec!["--task", "embed", "--run-id", "e", "--format", "jsonl"];
        args.extend(["--pooling", pooling]);
        if raw {
            args.push("--raw-embeddings");
        }
        ok(&job(&out, &fixture("onnx/dinov2"), &args));
        let results = rows(&out.join("results_e_shard_0.jsonl"));
        assert_eq!(results.len(), 13);
        for (file, refs) in want["images"].as_object().unwrap() {
            if !exact(file) {
                continue;
            }
            let mut reference = floats(&refs[key]);
            if !raw {
                let norm = reference.iter().map(|x| x * x).sum::<f32>().sqrt();
                reference.iter_mut().for_each(|x| *x /= norm);
            }
            let got = floats(&results[file]["embedding"]);
            let d = max_diff(&got, &reference);
            assert!(d <= 1e-4, "{pooling} {file}: {d}");
        }
    }
}

#[test]
fn a_bare_onnx_file_runs_with_preprocessing_flags_and_a_labels_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let labels = fixture("onnx/plain/labels.txt");
    let run = job(
        &out,
        &fixture("onnx/plain/model.onnx"),
        &[
            "--run-id",
            "p",
            "--format",
            "jsonl",
            "--image-size",
            "48",
            "--labels",
            labels.to_str().unwrap(),
            // A fixed batch axis of 4: batches of 5 are split and padded.
            "--batch-size",
            "5",
        ],
    );
    ok(&run);
    check_labels("plain", &rows(&out.join("results_p_shard_0.jsonl")));
}

#[test]
fn outputs_writes_every_output_with_its_shape_in_the_parquet_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ok(&job(
        &out,
        &fixture("onnx/siglip"),
        &["--task", "outputs", "--run-id", "o"],
    ));
    let file = std::fs::File::open(out.join("results_o_shard_0.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 13);
    let schema = parquet::arrow::parquet_to_arrow_schema(
        reader.metadata().file_metadata().schema_descr(),
        reader.metadata().file_metadata().key_value_metadata(),
    )
    .unwrap();
    let shape = |name: &str| {
        schema
            .field_with_name(name)
            .unwrap()
            .metadata()
            .get("shape")
            .cloned()
    };
    // SigLIP at 64x64, patch 8: 64 tokens of 32.
    assert_eq!(shape("last_hidden_state").as_deref(), Some("[64,32]"));
    assert_eq!(shape("pooler_output").as_deref(), Some("[32]"));
}

#[test]
fn what_cannot_run_exits_2_before_any_work_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A folder holding nothing we run.
    let junk = dir.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("pytorch_model.bin"), b"x").unwrap();
    let run = job(&out, &junk, &[]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains("model.onnx") && err.contains("pytorch_model.bin"),
        "{err}"
    );
    // An output the model does not have.
    let run = job(&out, &fixture("onnx/resnet"), &["--output-name", "nope"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--output-name") && err.contains("logits"),
        "{err}"
    );
    // The CUDA provider, from a runtime without it (PyPI's CPU wheel): never a CPU run.
    let run = Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .arg("--model")
        .arg(fixture("onnx/resnet"))
        .arg("--input")
        .arg(fixture("images"))
        .args(["--device", "cuda:0", "--output"])
        .arg(&out)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("CUDAExecutionProvider"), "{err}");
    // No ONNX Runtime, and a file that is not the library.
    for (path, says) in [
        (dir.path().join("absent.so"), "pip install onnxruntime"),
        (junk.join("pytorch_model.bin"), "ONNX Runtime library"),
    ] {
        let run = Command::new(env!("CARGO_BIN_EXE_batch-inference"))
            .arg("--model")
            .arg(fixture("onnx/resnet"))
            .arg("--input")
            .arg(fixture("images"))
            .args(["--device", "cpu", "--output"])
            .arg(&out)
            .env("ORT_DYLIB_PATH", &path)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    assert!(!out.join("_dataflux").exists(), "nothing was written");
}

#[test]
fn a_changed_model_file_under_the_same_run_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["model.onnx", "config.json", "preprocessor_config.json"] {
        std::fs::copy(fixture("onnx/convnext").join(f), model.join(f)).unwrap();
    }
    ok(&job(&out, &model, &["--run-id", "same"]));
    // The ConvNeXt at 384 has another graph under the same name.
    for f in ["model.onnx", "config.json", "preprocessor_config.json"] {
        std::fs::copy(fixture("onnx/convnext384").join(f), model.join(f)).unwrap();
    }
    let run = job(&out, &model, &["--run-id", "same"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("model_sha256"), "{err}");
}

#[test]
fn an_onnx_folder_from_a_bucket_or_in_the_hub_s_layout_runs() {
    // From a bucket URL, through the once-per-node model cache.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    let url = format!(
        "file://{}",
        fixture("onnx/resnet").canonicalize().unwrap().display()
    );
    let run = Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .args(["--model", &url, "--model-cache"])
        .arg(&cache)
        .arg("--input")
        .arg(fixture("images"))
        .args([
            "--device", "cpu", "--run-id", "b", "--format", "jsonl", "--output",
        ])
        .arg(&out)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    ok(&run);
    check_labels("resnet", &rows(&out.join("results_b_shard_0.jsonl")));
    // A hub repository's layout: onnx/model.onnx, the JSON files at the top.
    let hub = dir.path().join("hub-style");
    std::fs::create_dir_all(hub.join("onnx")).unwrap();
    std::fs::copy(
        fixture("onnx/resnet/model.onnx"),
        hub.join("onnx/model.onnx"),
    )
    .unwrap();
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(fixture("onnx/resnet").join(f), hub.join(f)).unwrap();
    }
    let out = dir.path().join("out2");
    ok(&job(&out, &hub, &["--run-id", "h", "--format", "jsonl"]));
    check_labels("resnet", &rows(&out.join("results_h_shard_0.jsonl")));
}

#[test]
fn without_ort_dylib_path_the_active_python_s_onnxruntime_is_found() {
    let lib = PathBuf::from(
        std::env::var_os("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (.ci/test sets it)"),
    );
    let capi = lib.parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A `python3` whose onnxruntime package lives where the test's library is (as a pyenv
    // shim's would: no site-packages beside it).
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let python = bin.join("python3");
    std::fs::write(&python, format!("#!/bin/sh\necho '{}'\n", capi.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_batch-inference"))
        .arg("--model")
        .arg(fixture("onnx/convnext"))
        .arg("--input")
        .arg(fixture("images"))
        .args(["--device", "cpu", "--output"])
        .arg(&out)
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("VIRTUAL_ENV")
        .env_remove("CONDA_PREFIX")
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    ok(&run);
}
