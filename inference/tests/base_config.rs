//! The full google/vit-base-patch16-224 shape builds and runs on random weights.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dataflux_inference::vit::ViTForImageClassification;
use dataflux_inference::{Classifier, PreprocessorConfig, ViTConfig};

#[test]
fn base_config_runs_on_random_weights() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = ViTConfig::vit_base_patch16_224(1000);
    let dev = Device::Cpu;
    let shapes = ViTForImageClassification::weight_shapes(&cfg, 1000);
    assert_eq!(shapes.len(), 8 + 12 * 16);
    let mut tensors = HashMap::new();
    for (name, shape) in shapes {
        tensors.insert(name, Tensor::randn(0f32, 0.02, shape, &dev)?);
    }
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &dev);
    let classifier = Classifier::from_parts(
        cfg,
        PreprocessorConfig::square(224),
        vb,
        Path::new("random"),
    )?;
    let pixels = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &dev)?;
    let logits = classifier.logits(&pixels)?;
    assert_eq!(logits.dims(), &[1, 1000]);
    let top = classifier.top_k(&logits, 5)?;
    assert_eq!(top[0].len(), 5);
    assert!(top[0][0].probability >= top[0][4].probability);
    assert_eq!(top[0][0].label, format!("LABEL_{}", top[0][0].index));
    Ok(())
}
