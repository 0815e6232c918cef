//! Decoding edge cases: bombs, garbage, fast mode.

use std::io::Cursor;

use dataflux_inference::preprocess::scaled_jpeg_decoding;
use dataflux_inference::{
    DecodeLimits, PreprocessError, PreprocessMode, Preprocessor, PreprocessorConfig,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A PNG whose header claims `w`x`h` pixels, with a tiny (invalid) body.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for b in bytes {
            crc ^= *b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn jpeg(w: u32, h: u32) -> Result<Vec<u8>, image::ImageError> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = ((x * 7 + y * 13) % 256) as u8;
        let stripe = if (x / 3) % 2 == 0 { 255 } else { 0 };
        image::Rgb([v, stripe, ((x * y) % 251) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)?;
    Ok(out.into_inner())
}

#[test]
fn decompression_bomb_is_refused_by_header() {
    let p = Preprocessor::new(PreprocessorConfig::square(32));
    match p.preprocess(&png_header(50_000, 50_000)) {
        Err(PreprocessError::TooLarge { width, height }) => {
            assert_eq!((width, height), (50_000, 50_000))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let small = p
        .clone()
        .with_limits(DecodeLimits::default().with_max_width(100));
    assert!(matches!(
        small.preprocess(&png_header(101, 10)),
        Err(PreprocessError::TooLarge {
            width: 101,
            height: 10
        })
    ));
}

#[test]
fn allocation_limit_is_typed() -> TestResult {
    let p = Preprocessor::new(PreprocessorConfig::square(32))
        .with_limits(DecodeLimits::default().with_max_alloc_bytes(1000));
    let err = p.preprocess(&jpeg(64, 64)?).err();
    assert_eq!(err.as_ref().map(|e| e.kind()), Some("too_large"), "{err:?}");
    Ok(())
}

#[test]
fn garbage_and_truncation_are_typed() -> TestResult {
    let p = Preprocessor::new(PreprocessorConfig::square(32));
    assert_eq!(
        p.preprocess(b"hello world").err().map(|e| e.kind()),
        Some("unknown_format")
    );
    assert_eq!(
        p.preprocess(&[]).err().map(|e| e.kind()),
        Some("unknown_format")
    );
    let j = jpeg(64, 64)?;
    assert_eq!(
        p.preprocess(&j[..j.len() / 3]).err().map(|e| e.kind()),
        Some("decode")
    );
    Ok(())
}

#[test]
fn output_shape_and_source_size() -> TestResult {
    let p = Preprocessor::new(PreprocessorConfig::square(224));
    let out = p.preprocess(&jpeg(640, 480)?)?;
    assert_eq!(out.pixels.len(), 3 * 224 * 224);
    assert_eq!((out.source_width, out.source_height), (640, 480));
    assert!(out.pixels.iter().all(|v| (-1.0..=1.0).contains(v)));
    Ok(())
}

/// A smooth, photo-like JPEG: gradients, a disc, low-frequency waves, mild noise.
fn photo_jpeg(w: u32, h: u32) -> Result<Vec<u8>, image::ImageError> {
    let mut state = 12345u32;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % 17) as i32 - 8;
        let (dx, dy) = (x as i32 - w as i32 / 2, y as i32 - h as i32 / 3);
        let base = if dx * dx + dy * dy < (h as i32 / 4).pow(2) {
            [200, 70, 40]
        } else {
            [
                (x * 255 / w) as i32,
                (y * 255 / h) as i32,
                128 + ((x as f32 / 23.0).sin() * (y as f32 / 31.0).cos() * 90.0) as i32,
            ]
        };
        image::Rgb(base.map(|v| (v + n).clamp(0, 255) as u8))
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)?;
    Ok(out.into_inner())
}

/// Mean and largest difference between fast and exact mode on a photo-like `w`x`h` JPEG
/// resized to 224x224, in 8-bit levels (normalized with std 0.5: one level is 2/255).
fn fast_vs_exact_levels(w: u32, h: u32) -> Result<(f32, f32), Box<dyn std::error::Error>> {
    let exact = Preprocessor::new(PreprocessorConfig::square(224));
    let fast = exact.clone().with_mode(PreprocessMode::Fast);
    let bytes = photo_jpeg(w, h)?;
    let a = exact.preprocess(&bytes)?.pixels;
    let b = fast.preprocess(&bytes)?.pixels;
    let levels: Vec<f32> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() * 127.5)
        .collect();
    let mean = levels.iter().sum::<f32>() / levels.len() as f32;
    let max = levels.iter().copied().fold(0f32, f32::max);
    eprintln!("fast vs exact on a photo-like {w}x{h} JPEG: mean {mean:.3}, max {max:.1} levels");
    Ok((mean, max))
}

#[test]
fn fast_mode_is_close() -> TestResult {
    let (mean, _) = fast_vs_exact_levels(1280, 960)?;
    assert!(mean < 3.0, "mean {mean}/255");
    Ok(())
}

#[test]
fn fast_mode_decodes_large_jpegs_at_draft_scale() -> TestResult {
    let exact = Preprocessor::new(PreprocessorConfig::square(224));
    let fast = exact.clone().with_mode(PreprocessMode::Fast);
    let bytes = photo_jpeg(640, 480)?;
    let out = fast.preprocess(&bytes)?;
    assert_eq!(out.pixels.len(), 3 * 224 * 224);
    // COCO-sized: twice the output on both sides, so decoded at half size in the DCT domain
    // when the scaled decoder is built in; at full size otherwise.
    let expected = if scaled_jpeg_decoding() {
        (320, 240)
    } else {
        (640, 480)
    };
    assert_eq!((out.source_width, out.source_height), expected);
    // Less than twice the output: full size in both modes, and the same pixels.
    let small = photo_jpeg(400, 300)?;
    let (a, b) = (exact.preprocess(&small)?, fast.preprocess(&small)?);
    assert_eq!((b.source_width, b.source_height), (400, 300));
    assert_eq!(a.pixels, b.pixels);
    Ok(())
}

#[test]
fn fast_mode_is_close_at_coco_size() -> TestResult {
    let (mean, max) = fast_vs_exact_levels(640, 480)?;
    assert!(mean < 2.0, "mean {mean} levels");
    assert!(max < 64.0, "max {max} levels");
    Ok(())
}

#[test]
fn fast_mode_keeps_errors_and_limits_of_exact_mode() -> TestResult {
    let fast = Preprocessor::new(PreprocessorConfig::square(32)).with_mode(PreprocessMode::Fast);
    let j = photo_jpeg(640, 480)?;
    // Truncated: the same typed error as exact mode, whichever decoder saw it first.
    assert_eq!(
        fast.preprocess(&j[..j.len() / 2]).err().map(|e| e.kind()),
        Some("decode")
    );
    // The allocation limit gives exact mode's error too.
    let tight = fast
        .clone()
        .with_limits(DecodeLimits::default().with_max_alloc_bytes(1000));
    assert_eq!(
        tight.preprocess(&j).err().map(|e| e.kind()),
        Some("too_large")
    );
    // The header is checked against the limits before anything is decoded.
    let small = fast
        .clone()
        .with_limits(DecodeLimits::default().with_max_width(639));
    assert!(matches!(
        small.preprocess(&j),
        Err(PreprocessError::TooLarge {
            width: 640,
            height: 480
        })
    ));
    Ok(())
}

#[test]
fn fast_mode_falls_back_for_cmyk_jpegs() -> TestResult {
    // libjpeg-turbo cannot turn CMYK into RGB: the exact decoder takes those images.
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/images/cmyk.jpg"
    ))?;
    // 80x60 for a 30x30 output: a 1/2 draft for any other JPEG, and too small for fast
    // mode's box reduction, so full-size decoding gives exact mode's pixels.
    let exact = Preprocessor::new(PreprocessorConfig::square(30));
    let fast = exact.clone().with_mode(PreprocessMode::Fast);
    let (a, b) = (exact.preprocess(&bytes)?, fast.preprocess(&bytes)?);
    assert_eq!((a.source_width, a.source_height), (80, 60));
    assert_eq!(
        (a.source_width, a.source_height),
        (b.source_width, b.source_height)
    );
    assert_eq!(a.pixels, b.pixels);
    Ok(())
}
