//! `preprocessor_config.json` of the hub's popular vision families, as their repositories hold
//! them (current and legacy forms), read into the steps `transformers` runs: the resize, the
//! crop, the normalisation and the alpha handling; and pixel-changing keys a family does not
//! have, refused by name.

use dataflux_inference::config::Resize;
use dataflux_inference::{Preprocessor, PreprocessorConfig, Resample};

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

fn parse(json: &str) -> Result<PreprocessorConfig, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preprocessor_config.json");
    std::fs::write(&path, json).unwrap();
    PreprocessorConfig::from_file(&path).map_err(|e| e.to_string())
}

fn steps(c: &PreprocessorConfig) -> (Resize, bool, u32, u32, Resample, bool) {
    (
        c.resize,
        c.center_crop,
        c.height,
        c.width,
        c.resample,
        c.alpha_on_white,
    )
}

#[test]
fn resnet_and_convnext_resize_by_crop_pct_then_crop() {
    // microsoft/resnet-50 (legacy feature extractor form).
    let resnet = parse(
        r#"{"crop_pct": 0.875, "do_normalize": true, "do_resize": true,
            "feature_extractor_type": "ConvNextFeatureExtractor",
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
            "resample": 3, "size": 224}"#,
    )
    .unwrap();
    assert_eq!(
        steps(&resnet),
        (
            Resize::ShortestEdge(256),
            true,
            224,
            224,
            Resample::Bicubic,
            false
        )
    );
    assert_eq!(
        (resnet.image_mean, resnet.image_std),
        (IMAGENET_MEAN, IMAGENET_STD)
    );
    // facebook/convnext-base-384: from 384 up, a squash resize and no crop.
    let large = parse(
        r#"{"crop_pct": null, "image_processor_type": "ConvNextImageProcessor",
            "resample": 3, "size": {"shortest_edge": 384}}"#,
    )
    .unwrap();
    assert_eq!(
        steps(&large),
        (
            Resize::To {
                height: 384,
                width: 384
            },
            false,
            384,
            384,
            Resample::Bicubic,
            false
        )
    );
    // crop_pct defaults to 224 / 256; int(288 / 0.875) = 329.
    let c = parse(
        r#"{"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 288}}"#,
    )
    .unwrap();
    assert_eq!(c.resize, Resize::ShortestEdge(329));
    // A ConvNeXt config with height and width is not one transformers reads.
    assert!(parse(
        r#"{"image_processor_type": "ConvNextImageProcessor", "size": {"height": 224, "width": 224}}"#
    )
    .unwrap_err()
    .contains("shortest_edge"));
}

#[test]
fn dinov2_and_bit_crop_after_the_shortest_edge_and_composite_alpha() {
    // facebook/dinov2-small.
    let dino = parse(
        r#"{"crop_size": {"height": 224, "width": 224}, "do_center_crop": true,
            "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "BitImageProcessor",
            "image_std": [0.229, 0.224, 0.225], "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256}}"#,
    )
    .unwrap();
    assert_eq!(
        steps(&dino),
        (
            Resize::ShortestEdge(256),
            true,
            224,
            224,
            Resample::Bicubic,
            true
        )
    );
    // BiT reads a bare size as a shortest edge, and converts to RGB by default.
    let bit = parse(
        r#"{"crop_size": 448, "do_center_crop": true, "image_processor_type": "BitImageProcessor",
            "resample": 2, "size": 448}"#,
    )
    .unwrap();
    assert_eq!(
        steps(&bit),
        (
            Resize::ShortestEdge(448),
            true,
            448,
            448,
            Resample::Bilinear,
            true
        )
    );
}

#[test]
fn vit_like_families_read_a_bare_size_as_a_square() {
    // facebook/deit-base-distilled-patch16-224: 256x256, then the centre 224.
    let deit = parse(
        r#"{"crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true,
            "feature_extractor_type": "DeiTFeatureExtractor",
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
            "resample": 3, "size": 256}"#,
    )
    .unwrap();
    assert_eq!(
        steps(&deit),
        (
            Resize::To {
                height: 256,
                width: 256
            },
            true,
            224,
            224,
            Resample::Bicubic,
            false
        )
    );
    // microsoft/beit-base-patch16-224 (legacy reduce_labels, neutral when false).
    let beit = parse(
        r#"{"crop_size": 224, "do_center_crop": false, "do_normalize": true, "do_resize": true,
            "feature_extractor_type": "BeitFeatureExtractor", "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5], "reduce_labels": false, "resample": 2, "size": 224}"#,
    )
    .unwrap();
    assert_eq!(beit.height, 224);
    assert!(!beit.center_crop);
    // google/siglip-base-patch16-224.
    let siglip = parse(
        r#"{"do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
            "image_std": [0.5, 0.5, 0.5], "processor_class": "SiglipProcessor", "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"height": 224, "width": 224}}"#,
    )
    .unwrap();
    assert_eq!(
        steps(&siglip),
        (
            Resize::To {
                height: 224,
                width: 224
            },
            false,
            224,
            224,
            Resample::Bicubic,
            false
        )
    );
}

#[test]
fn efficientnet_divides_by_std_twice_with_include_top_and_offsets_with_rescale_offset() {
    // google/efficientnet-b0 (include_top false): ImageNet normalisation once.
    let b0 = parse(
        r#"{"crop_size": {"height": 289, "width": 289}, "do_center_crop": false,
            "do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "EfficientNetImageProcessor",
            "image_std": [0.47853944, 0.4732864, 0.47434163], "include_top": false,
            "resample": 0, "rescale_factor": 0.00392156862745098, "rescale_offset": false,
            "size": {"height": 224, "width": 224}}"#,
    )
    .unwrap();
    assert!(!b0.extra_std_division && !b0.rescale_offset);
    assert_eq!(b0.resample, Resample::Nearest);
    let lut = Preprocessor::new(b0.clone()).lut()[0];
    let once = ((255.0f64 * (1.0 / 255.0)) as f32 - b0.image_mean[0]) / b0.image_std[0];
    assert_eq!(lut[255], once);
    // include_top defaults to true: a second division by std.
    let top = parse(
        r#"{"image_processor_type": "EfficientNetImageProcessor", "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.25, 0.25, 0.25], "rescale_offset": true,
            "rescale_factor": 0.00784313725490196, "size": {"height": 8, "width": 8}}"#,
    )
    .unwrap();
    assert!(top.extra_std_division && top.rescale_offset);
    let lut = Preprocessor::new(top).lut()[0];
    // 255 / 127.5 - 1 = 1; (1 - 0.5) / 0.25 = 2; / 0.25 = 8. 0 -> -1 -> -6 -> -24.
    assert!((lut[255] - 8.0).abs() < 1e-5, "{}", lut[255]);
    assert!((lut[0] + 24.0).abs() < 1e-5, "{}", lut[0]);
}

#[test]
fn a_family_s_own_keys_are_refused_elsewhere_by_name() {
    let err =
        parse(r#"{"image_processor_type": "ViTImageProcessor", "crop_pct": 0.9}"#).unwrap_err();
    assert!(
        err.contains("crop_pct") && err.contains("ViTImageProcessor"),
        "{err}"
    );
    let err = parse(r#"{"image_processor_type": "CLIPImageProcessor", "crop_size": 224, "do_center_crop": true, "size": 224, "include_top": true}"#)
        .unwrap_err();
    assert!(err.contains("include_top"), "{err}");
    let err = parse(r#"{"image_processor_type": "ViTImageProcessor", "do_pan_and_scan": true}"#)
        .unwrap_err();
    assert!(err.contains("do_pan_and_scan"), "{err}");
}
