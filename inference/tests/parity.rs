//! Parity with PyTorch + transformers on the committed fixtures (`fixtures/make_fixtures.py`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use dataflux_inference::{
    Classifier, DecodePool, DeviceSpec, Error, LoadOptions, ModelFiles, ModelSource, Preprocessor,
    PreprocessorConfig,
};
use serde::Deserialize;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

#[derive(Debug, Deserialize)]
struct Entry {
    top1: usize,
    margin: f32,
}

fn manifest() -> Result<BTreeMap<String, Entry>, Box<dyn std::error::Error>> {
    Ok(serde_json::from_slice(&std::fs::read(
        fixtures().join("expected.json"),
    )?)?)
}

fn expected() -> Result<HashMap<String, Tensor>, Box<dyn std::error::Error>> {
    Ok(candle_core::safetensors::load(
        fixtures().join("expected.safetensors"),
        &Device::Cpu,
    )?)
}

fn tiny() -> Result<Classifier, Error> {
    Classifier::load_blocking(
        &ModelSource::Local(fixtures().join("tiny-vit")),
        &LoadOptions::default(),
        DeviceSpec::Cpu,
        None,
    )
}

fn flat(t: &Tensor) -> Result<Vec<f32>, candle_core::Error> {
    t.flatten_all()?.to_vec1::<f32>()
}

#[test]
fn preprocessing_matches_pil() -> TestResult {
    let classifier = tiny()?;
    let expected = expected()?;
    let std = classifier.preprocessor().config().image_std[0];
    for name in manifest()?.keys() {
        let bytes = std::fs::read(fixtures().join("images").join(name))?;
        let ours = classifier.preprocessor().preprocess(&bytes)?;
        // 16-bit grey: PIL clips to white, we scale; compare with the scaled reference.
        let key = if name == "gray16.png" {
            format!("scaled.{name}")
        } else {
            format!("pixels.{name}")
        };
        let theirs = flat(&expected[&key])?;
        assert_eq!(ours.pixels.len(), theirs.len(), "{name}");
        // Differences in [0, 1] pixel units (undo the normalization's division by std).
        let diffs: Vec<f32> = ours
            .pixels
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs() * std)
            .collect();
        let max = diffs.iter().copied().fold(0f32, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        eprintln!(
            "{name}: max {:.3}/255 mean {:.4}/255",
            max * 255.0,
            mean * 255.0
        );
        assert!(
            max <= 2.0 / 255.0 + 1e-6,
            "{name}: max abs {}/255",
            max * 255.0
        );
        // Decoders aside (JPEG: libjpeg-turbo or zune-jpeg), the pixels are PIL's exactly: the
        // resize is Pillow's own arithmetic.
        if !name.ends_with(".jpg") {
            assert!(max < 0.5 / 255.0, "{name}: max abs {}/255", max * 255.0);
        }
        assert!(mean < 0.5 / 255.0, "{name}: mean abs {}/255", mean * 255.0);
    }
    Ok(())
}

#[test]
fn pil_saturates_16_bit_grey_and_we_do_not() -> TestResult {
    let classifier = tiny()?;
    let expected = expected()?;
    let bytes = std::fs::read(fixtures().join("images/gray16.png"))?;
    let ours = classifier.preprocessor().preprocess(&bytes)?.pixels;
    let pil = flat(&expected["pixels.gray16.png"])?;
    let white = pil.iter().filter(|v| **v > 0.99).count() as f32 / pil.len() as f32;
    let ours_white = ours.iter().filter(|v| **v > 0.99).count() as f32 / ours.len() as f32;
    assert!(white > 0.9, "PIL output is no longer near white ({white})");
    assert!(ours_white < 0.1, "we saturate too ({ours_white})");
    Ok(())
}

#[test]
fn logits_match_transformers_on_its_own_pixels() -> TestResult {
    let classifier = tiny()?;
    let expected = expected()?;
    for name in manifest()?.keys() {
        let ours = flat(&classifier.logits(&expected[&format!("pixels.{name}")])?)?;
        let theirs = flat(&expected[&format!("logits.{name}")])?;
        let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = ours
            .iter()
            .zip(&theirs)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-4 * scale,
            "{name}: max abs {worst}, scale {scale}"
        );
    }
    Ok(())
}

#[test]
fn top1_matches_end_to_end_from_files() -> TestResult {
    let classifier = tiny()?;
    let manifest = manifest()?;
    let names: Vec<&String> = manifest.keys().filter(|n| *n != "gray16.png").collect();
    let images = names
        .iter()
        .map(|n| {
            Ok(classifier
                .preprocessor()
                .preprocess(&std::fs::read(fixtures().join("images").join(n))?)?)
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let predictions = classifier.classify(&images, 2)?;
    let mut checked = 0;
    for (name, preds) in names.iter().zip(&predictions) {
        let entry = &manifest[*name];
        assert_eq!(preds.len(), 2);
        assert_eq!(preds[0].label, classifier.labels()[preds[0].index]);
        if entry.margin > 1e-2 {
            assert_eq!(preds[0].index, entry.top1, "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} images had a clear top-1");
    Ok(())
}

#[test]
fn labels_with_commas_and_quotes_survive() -> TestResult {
    let classifier = tiny()?;
    assert_eq!(classifier.labels()[0], "tench, Tinca tinca");
    assert_eq!(classifier.labels()[1], "say \"cheese\"");
    assert_eq!(classifier.labels()[8], "unicode café, ünïcødé");
    Ok(())
}

#[test]
fn agrees_with_candle_transformers_vit() -> TestResult {
    let classifier = tiny()?;
    let expected = expected()?;
    let weights = fixtures().join("tiny-vit/model.safetensors");
    let cfg: candle_transformers::models::vit::Config =
        serde_json::from_slice(&std::fs::read(fixtures().join("tiny-vit/config.json"))?)?;
    // SAFETY: the fixture file is not modified while mapped.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)?
    };
    let reference = candle_transformers::models::vit::Model::new(&cfg, 10, vb)?;
    let pixels = &expected["pixels.rgb.jpg"];
    let theirs = flat(&reference.forward(pixels)?)?;
    let ours = flat(&classifier.logits(pixels)?)?;
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-4, "{ours:?} vs {theirs:?}");
    }
    Ok(())
}

#[test]
fn pipelined_classification_keeps_order_and_errors() -> TestResult {
    let classifier = tiny()?;
    let pool = DecodePool::new(2)?;
    let read = |n: &str| std::fs::read(fixtures().join("images").join(n));
    let batches = vec![
        vec![read("rgb.jpg")?, b"not an image".to_vec()],
        vec![read("gray.png")?],
        vec![
            read("rgba.webp")?,
            read("palette.gif")?,
            read("rgb.jpg")?[..200].to_vec(),
        ],
    ];
    let direct = classifier.classify(
        &[classifier.preprocessor().preprocess(&read("rgb.jpg")?)?],
        3,
    )?;
    let mut seen = Vec::new();
    classifier.classify_stream(&pool, batches, 3, |batch, results| {
        assert_eq!(batch.len(), results.len());
        seen.push(results);
        Ok(())
    })?;
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0][0].as_ref().ok(), Some(&direct[0]));
    assert_eq!(
        seen[0][1].as_ref().map_err(|e| e.kind()).err(),
        Some("unknown_format")
    );
    assert!(seen[1][0].is_ok());
    assert!(seen[2][0].is_ok() && seen[2][1].is_ok());
    assert_eq!(
        seen[2][2].as_ref().map_err(|e| e.kind()).err(),
        Some("decode")
    );
    Ok(())
}

fn copy_model(to: &Path) -> std::io::Result<()> {
    for f in [
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(fixtures().join("tiny-vit").join(f), to.join(f))?;
    }
    Ok(())
}

fn edit_config(dir: &Path, key: &str, value: serde_json::Value) -> TestResult {
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    cfg[key] = value;
    std::fs::write(&path, serde_json::to_vec(&cfg)?)?;
    Ok(())
}

#[test]
fn typed_load_errors() -> TestResult {
    let load = |dir: &Path| {
        ModelFiles::in_dir(dir).and_then(|f| Classifier::from_files(&f, &Device::Cpu, None))
    };
    let dir = tempfile::tempdir()?;
    copy_model(dir.path())?;
    std::fs::remove_file(dir.path().join("model.safetensors"))?;
    assert!(
        matches!(load(dir.path()), Err(Error::MissingFile { path }) if path.ends_with("model.safetensors"))
    );

    let dir = tempfile::tempdir()?;
    copy_model(dir.path())?;
    edit_config(
        dir.path(),
        "architectures",
        serde_json::json!(["BertForMaskedLM"]),
    )?;
    assert!(
        matches!(load(dir.path()), Err(Error::WrongArchitecture { found, .. }) if found == "BertForMaskedLM")
    );

    let dir = tempfile::tempdir()?;
    copy_model(dir.path())?;
    edit_config(dir.path(), "intermediate_size", serde_json::json!(48))?;
    match load(dir.path()) {
        Err(Error::ShapeMismatch {
            name,
            expected,
            found,
            ..
        }) => {
            assert_eq!(name, "vit.encoder.layer.0.intermediate.dense.weight");
            assert_eq!((expected, found), (vec![48, 32], vec![64, 32]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }

    let dir = tempfile::tempdir()?;
    copy_model(dir.path())?;
    edit_config(dir.path(), "num_attention_heads", serde_json::json!(5))?;
    assert!(matches!(load(dir.path()), Err(Error::InvalidConfig { .. })));

    let dir = tempfile::tempdir()?;
    copy_model(dir.path())?;
    edit_config(dir.path(), "intermediate_size", serde_json::json!(0))?;
    assert!(
        matches!(load(dir.path()), Err(Error::InvalidConfig { reason, .. }) if reason.contains("intermediate_size"))
    );

    let dir = tempfile::tempdir()?;
    copy_model(dir.path())?;
    std::fs::remove_file(dir.path().join("preprocessor_config.json"))?;
    edit_config(dir.path(), "image_size", serde_json::json!(32))?;
    let classifier = load(dir.path())?;
    assert_eq!(
        classifier.preprocessor().config(),
        &PreprocessorConfig::square(32)
    );
    Ok(())
}

#[test]
fn offline_hub_load_without_cache_fails_fast() -> TestResult {
    let cache = tempfile::tempdir()?;
    let options = LoadOptions::default()
        .with_offline(true)
        .with_cache_dir(Some(cache.path().to_path_buf()))
        .with_endpoint(Some("http://127.0.0.1:9".into()));
    let source = ModelSource::Hub {
        repo: "google/vit-base-patch16-224".into(),
        revision: None,
    };
    let err = Classifier::load_blocking(&source, &options, DeviceSpec::Cpu, None);
    assert!(
        matches!(err, Err(Error::Hub { ref file, .. }) if file == "config.json"),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn hub_cache_layout_is_used_offline() -> TestResult {
    // The layout hf-hub and huggingface_hub share: refs/main holds the commit, files live in
    // snapshots/<commit>/.
    let cache = tempfile::tempdir()?;
    let repo = cache.path().join("models--google--vit-tiny");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs"))?;
    std::fs::write(repo.join("refs/main"), commit)?;
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot)?;
    copy_model(&snapshot)?;
    let options = LoadOptions::default()
        .with_offline(true)
        .with_cache_dir(Some(cache.path().to_path_buf()))
        .with_endpoint(Some("http://127.0.0.1:9".into()));
    let source: ModelSource = "google/vit-tiny".parse()?;
    let classifier = Classifier::load_blocking(&source, &options, DeviceSpec::Cpu, None)?;
    assert_eq!(classifier.labels().len(), 10);
    Ok(())
}

#[test]
fn preprocessor_defaults_match_vit() {
    let p = Preprocessor::new(PreprocessorConfig::default());
    assert_eq!((p.config().height, p.config().width), (224, 224));
    assert_eq!(p.config().image_mean, [0.5; 3]);
}
