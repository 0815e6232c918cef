//! ONNX Runtime engine against PyTorch + transformers: every fixture model of
//! `fixtures/make_onnx_fixtures.py` (optimum exports of ResNet, ConvNeXt at 224 and 384,
//! DINOv2, SigLIP and the tiny ViT; a plain `torch.onnx.export` with a fixed batch of 4 and its
//! float16 twin) on every fixture image, within 1e-4 of the stored references (float16: 1e-2);
//! and the same ViT checkpoint on candle and on ONNX Runtime.
//!
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH`, or the `onnxruntime` wheel of the active
//! Python environment): `.ci/test` installs it. A missing library fails these tests.
#![cfg(feature = "onnx")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dataflux_inference::folder::{recognise, Checkpoint, OnnxFiles};
use dataflux_inference::onnx::head::{pool, softmax_top_k};
use dataflux_inference::onnx::{labels_file, OnnxModel, OutputTensor, SessionOptions};
use dataflux_inference::{
    CroppedImage, DType, Device, ModelFiles, Pooling, PreprocessorConfig, Resample, Resize,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn images() -> Vec<(String, Vec<u8>)> {
    let mut list: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixtures().join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    list.sort();
    assert_eq!(list.len(), 13, "fixture images");
    list
}

#[derive(serde::Deserialize)]
struct Expected {
    images: BTreeMap<String, BTreeMap<String, Vec<f32>>>,
    #[serde(default)]
    top1: BTreeMap<String, String>,
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read(fixtures().join("onnx").join(name).join("expected.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn options() -> SessionOptions {
    SessionOptions::default().with_threads(2)
}

/// The folder's model, recognised by its files and loaded with its own preprocessing.
fn load_folder(name: &str) -> OnnxModel {
    let dir = fixtures().join("onnx").join(name);
    let Checkpoint::Onnx(files) = recognise(&dir, &["ViTForImageClassification"]).unwrap() else {
        panic!("{name}: not recognised as ONNX");
    };
    OnnxModel::load(&files, &options(), None, None).unwrap()
}

/// The plain export's preprocessing, given as a bare `.onnx` user gives it: 48x48, bilinear,
/// ImageNet mean and std; labels from labels.txt.
fn load_plain(name: &str) -> OnnxModel {
    let dir = fixtures().join("onnx").join(name);
    let config = PreprocessorConfig {
        image_mean: [0.485, 0.456, 0.406],
        image_std: [0.229, 0.224, 0.225],
        resample: Resample::Bilinear,
        ..PreprocessorConfig::square(48)
    };
    let labels = labels_file(&dir.join("labels.txt")).unwrap();
    OnnxModel::load(
        &OnnxFiles::bare(dir.join("model.onnx")),
        &options(),
        Some(config),
        Some(labels),
    )
    .unwrap()
}

fn prepared(model: &OnnxModel) -> Vec<(String, CroppedImage)> {
    images()
        .into_iter()
        .map(|(name, bytes)| {
            let image = model
                .preprocessor()
                .preprocess_u8(&bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, image)
        })
        .collect()
}

/// Images whose pixels are PIL's exactly. Two are not, by design or by decoder: 16-bit grey,
/// which PIL clips to white and we scale (see `preprocess`), and the CMYK JPEG, which
/// libjpeg-turbo does not decode here (a level off on some pixels).
fn exact(file: &str) -> bool {
    !matches!(file, "gray16.png" | "cmyk.jpg")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn output<'a>(outs: &'a [OutputTensor], name: &str) -> &'a OutputTensor {
    outs.iter().find(|o| o.name == name).unwrap()
}

/// Each image alone and all in one batch give the references, and the classifiers' top-1.
fn check_classifier(name: &str, model: &OnnxModel, output_name: &str, tolerance: f32) {
    let want = expected(name);
    let images = prepared(model);
    let batch: Vec<CroppedImage> = images.iter().map(|(_, i)| i.clone()).collect();
    let together = model.run(&batch).unwrap();
    let logits = output(&together, output_name);
    assert_eq!(logits.shape[0], images.len(), "{name}: one row per image");
    for (i, (file, image)) in images.iter().enumerate() {
        let reference = &want.images[file][output_name];
        let alone = model.run(std::slice::from_ref(image)).unwrap();
        let d_alone = max_diff(output(&alone, output_name).row(0), reference);
        let d_batch = max_diff(logits.row(i), reference);
        if !exact(file) {
            assert!(d_alone.is_finite() && d_batch.is_finite(), "{name} {file}");
            continue;
        }
        assert!(
            d_alone <= tolerance && d_batch <= tolerance,
            "{name} {file}: |onnx - torch| = {d_alone} alone, {d_batch} batched"
        );
        if let Some(top1) = want.top1.get(file) {
            let preds = softmax_top_k(logits.row(i), 1, model.labels());
            assert_eq!(&preds[0].label, top1, "{name} {file}: top-1");
        }
    }
}

#[test]
fn optimum_classifiers_match_pytorch() {
    for name in ["resnet", "convnext", "convnext384", "vit"] {
        let model = load_folder(name);
        check_classifier(name, &model, "logits", 1e-4);
    }
}

#[test]
fn convnext_processors_crop_below_384_and_squash_from_384() {
    let small = load_folder("convnext");
    let c = small.preprocessor().config();
    assert_eq!(
        (c.resize, c.center_crop, c.height),
        (Resize::ShortestEdge(256), true, 224)
    );
    let large = load_folder("convnext384");
    let c = large.preprocessor().config();
    assert_eq!(
        (c.resize, c.center_crop, c.height),
        (
            Resize::To {
                height: 384,
                width: 384
            },
            false,
            384
        )
    );
}

#[test]
fn a_fixed_batch_axis_is_padded_and_the_padding_dropped() {
    let model = load_plain("plain");
    assert_eq!(model.session().input().batch, Some(4));
    // 13 images through a batch axis fixed at 4: runs of 4, 4, 4 and 1 (+3 of padding).
    check_classifier("plain", &model, "output", 1e-4);
}

#[test]
fn a_float16_model_takes_and_gives_float16() {
    let model = load_plain("plain-f16");
    assert_eq!(
        model.session().input().element,
        dataflux_inference::onnx::Element::F16
    );
    check_classifier("plain-f16", &model, "output", 1e-2);
}

#[test]
fn embedders_match_pytorch_pooled_either_way() {
    for (name, pooled) in [("dinov2", None), ("siglip", Some("pooler_output"))] {
        let model = load_folder(name);
        let want = expected(name);
        let images = prepared(&model);
        let batch: Vec<CroppedImage> = images.iter().map(|(_, i)| i.clone()).collect();
        let outs = model.run(&batch).unwrap();
        let tokens = output(&outs, "last_hidden_state");
        let item: Vec<usize> = tokens.shape[1..].to_vec();
        for (i, (file, _)) in images.iter().enumerate() {
            if !exact(file) {
                continue;
            }
            let refs = &want.images[file];
            let cls = pool(tokens.row(i), &item, Pooling::Cls);
            let mean = pool(tokens.row(i), &item, Pooling::Mean);
            assert!(max_diff(&cls, &refs["cls"]) <= 1e-4, "{name} {file} cls");
            assert!(max_diff(&mean, &refs["mean"]) <= 1e-4, "{name} {file} mean");
            if let Some(p) = pooled {
                assert!(
                    max_diff(output(&outs, p).row(i), &refs[p]) <= 1e-4,
                    "{name} {file} {p}"
                );
            }
        }
    }
}

/// The same ViT checkpoint as safetensors on candle and exported to ONNX: the same logits
/// within 1e-4 and the same top-1, on every fixture image.
#[test]
fn candle_and_onnx_runtime_agree_on_the_same_vit() {
    let files = ModelFiles::in_dir(&fixtures().join("tiny-vit")).unwrap();
    let candle =
        dataflux_inference::Classifier::from_files(&files, &Device::Cpu, Some(DType::F32)).unwrap();
    let onnx = load_folder("vit");
    assert_eq!(
        candle.preprocessor().config(),
        onnx.preprocessor().config(),
        "both read the same preprocessor_config.json"
    );
    let images = prepared(&onnx);
    let batch: Vec<CroppedImage> = images.iter().map(|(_, i)| i.clone()).collect();
    let outs = onnx.run(&batch).unwrap();
    let onnx_logits = output(&outs, "logits");
    let prepared: Vec<_> = batch
        .iter()
        .map(|i| candle.preprocessor().normalize_cropped(i))
        .collect();
    let pixels = candle.batch_tensor(&prepared).unwrap();
    let candle_logits = candle.logits(&pixels).unwrap().to_vec2::<f32>().unwrap();
    for (i, (file, _)) in images.iter().enumerate() {
        // Same pixels into both engines: every image counts, cmyk and gray16 included.
        let d = max_diff(&candle_logits[i], onnx_logits.row(i));
        assert!(d <= 1e-4, "{file}: |candle - onnx| = {d}");
        let a = softmax_top_k(&candle_logits[i], 1, onnx.labels());
        let b = softmax_top_k(onnx_logits.row(i), 1, onnx.labels());
        assert_eq!(a[0].index, b[0].index, "{file}: top-1");
    }
}

#[test]
fn the_digest_changes_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::copy(fixtures().join("onnx/plain-f16/model.onnx"), &path).unwrap();
    let a = OnnxModel::load(&OnnxFiles::bare(path.clone()), &options(), None, None).unwrap();
    std::fs::copy(fixtures().join("onnx/plain/model.onnx"), &path).unwrap();
    let config = PreprocessorConfig::square(48);
    let b = OnnxModel::load(&OnnxFiles::bare(path), &options(), Some(config), None).unwrap();
    assert_eq!(a.digest().len(), 64);
    assert_ne!(a.digest(), b.digest());
}

#[test]
fn a_preprocessing_that_does_not_fit_the_input_is_refused() {
    let dir = fixtures().join("onnx/plain");
    let err = OnnxModel::load(
        &OnnxFiles::bare(dir.join("model.onnx")),
        &options(),
        Some(PreprocessorConfig::square(64)),
        None,
    )
    .unwrap_err();
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("48x48"), "{err}");
}
