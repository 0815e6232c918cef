//! 8-bit preprocessing and staging: the pixels a GPU job uploads and normalises on the device
//! equal, bit for bit, the f32 pixels of the CPU path (`Preprocessor::preprocess`).

use std::path::PathBuf;

use dataflux_inference::{
    CroppedImage, DType, Device, Error, PixelStager, PreprocessMode, Preprocessor,
    PreprocessorConfig, Resize, Tensor,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Every fixture image: formats, alpha, palettes, 16-bit, odd shapes, CMYK.
fn fixture_images() -> Result<Vec<(String, Vec<u8>)>, std::io::Error> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut out = Vec::new();
    for dir in ["images", "clip-images"] {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            out.push((path.display().to_string(), std::fs::read(&path)?));
        }
    }
    Ok(out)
}

/// The configurations whose steps differ: exact resize (ViT), shortest edge + centre crop
/// (CLIP), and a crop larger than the resized image (zero padding on two sides).
fn configs() -> Vec<(&'static str, PreprocessorConfig)> {
    let padded = PreprocessorConfig {
        resize: Resize::ShortestEdge(20),
        height: 28,
        width: 24,
        ..PreprocessorConfig::clip(24)
    };
    vec![
        ("vit", PreprocessorConfig::square(32)),
        ("clip", PreprocessorConfig::clip(24)),
        ("padded", padded),
    ]
}

fn stack(images: &[Vec<f32>], h: usize, w: usize) -> Result<Tensor, candle_core::Error> {
    let flat: Vec<f32> = images.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (images.len(), 3, h, w), &Device::Cpu)
}

fn bits(t: &Tensor) -> Result<Vec<u32>, candle_core::Error> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f32::to_bits)
        .collect())
}

#[test]
fn cropped_then_normalised_equals_the_f32_path_bit_for_bit() -> TestResult {
    let images = fixture_images()?;
    assert!(images.len() >= 19, "{} fixture images", images.len());
    for (name, config) in configs() {
        for mode in [PreprocessMode::Exact, PreprocessMode::Fast] {
            let pre = Preprocessor::new(config.clone()).with_mode(mode);
            for (path, bytes) in &images {
                let expected = pre.preprocess(bytes)?;
                let cropped = pre.preprocess_u8(bytes)?;
                assert_eq!(
                    cropped.pixels.len(),
                    3 * config.height as usize * config.width as usize
                );
                assert_eq!(
                    (cropped.source_width, cropped.source_height),
                    (expected.source_width, expected.source_height)
                );
                let normalised = pre.normalize_cropped(&cropped);
                let same = normalised
                    .pixels
                    .iter()
                    .zip(&expected.pixels)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{name} {mode:?} {path}: pixels differ");
                assert_eq!(normalised, expected, "{name} {mode:?} {path}");
            }
        }
    }
    Ok(())
}

#[test]
fn padding_is_level_zero_normalised() -> TestResult {
    let (_, config) = configs().remove(2);
    let pre = Preprocessor::new(config);
    let (_, bytes) = &fixture_images()?[0];
    let cropped = pre.preprocess_u8(bytes)?;
    // The resized image is 20 wide at most on the short side; the 28-high window overhangs it.
    let plane = 28 * 24;
    let first_row = &cropped.pixels[..24];
    let last_row = &cropped.pixels[plane - 24..plane];
    assert!(first_row.iter().all(|&v| v == 0) || last_row.iter().all(|&v| v == 0));
    let normalised = pre.normalize_cropped(&cropped);
    let zero = pre.lut()[0][0];
    assert!(normalised.pixels[..plane]
        .iter()
        .zip(&cropped.pixels[..plane])
        .filter(|(_, &v)| v == 0)
        .all(|(&p, _)| p.to_bits() == zero.to_bits()));
    Ok(())
}

#[test]
fn staged_batches_equal_the_f32_batch_on_both_paths() -> TestResult {
    let images = fixture_images()?;
    for (name, config) in configs() {
        if config.height != config.width {
            continue; // a stager serves square models
        }
        let size = config.height as usize;
        let pre = Preprocessor::new(config);
        let cropped: Vec<CroppedImage> = images
            .iter()
            .map(|(_, b)| pre.preprocess_u8(b))
            .collect::<Result<_, _>>()?;
        let prepared: Vec<Vec<f32>> = images
            .iter()
            .map(|(_, b)| pre.preprocess(b).map(|p| p.pixels))
            .collect::<Result<_, _>>()?;
        let expected = stack(&prepared, size, size)?;

        let host = PixelStager::new(&pre, size, &Device::Cpu, DType::F32)?;
        assert!(!host.normalises_on_device() && !host.pinned());
        let device_path = host.clone().with_device_path()?;
        assert!(device_path.normalises_on_device());
        for stager in [&host, &device_path] {
            let staged = stager.stage(&cropped)?;
            assert_eq!(staged.dims(), &[cropped.len(), 3, size, size], "{name}");
            assert_eq!(staged.dtype(), DType::F32);
            assert_eq!(bits(&staged)?, bits(&expected)?, "{name}");
        }
        // In bf16 both paths round the same f32 values.
        let bf16 = PixelStager::new(&pre, size, &Device::Cpu, DType::BF16)?.with_device_path()?;
        let staged = bf16.stage(&cropped)?;
        assert_eq!(staged.dtype(), DType::BF16);
        let want = expected.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
        assert_eq!(bits(&staged.to_dtype(DType::F32)?)?, bits(&want)?, "{name}");
        // An empty batch is an empty tensor.
        assert_eq!(host.stage(&[])?.dims(), &[0, 3, size, size]);
    }
    Ok(())
}

#[test]
fn an_image_of_another_size_is_named_by_position() -> TestResult {
    let pre = Preprocessor::new(PreprocessorConfig::square(16));
    let (_, bytes) = &fixture_images()?[0];
    let good = pre.preprocess_u8(bytes)?;
    let bad = Preprocessor::new(PreprocessorConfig::square(8)).preprocess_u8(bytes)?;
    let stager = PixelStager::new(&pre, 16, &Device::Cpu, DType::F32)?;
    for s in [stager.clone(), stager.with_device_path()?] {
        match s.stage(&[good.clone(), bad.clone()]) {
            Err(Error::InputSize {
                index: 1,
                expected: 768,
                found: 192,
                size: 16,
            }) => {}
            other => panic!("expected InputSize for image 1, got {other:?}"),
        }
    }
    Ok(())
}
