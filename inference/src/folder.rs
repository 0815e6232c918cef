//! A model folder recognised by its files: which engine runs it, and why.
//!
//! - `model.safetensors` whose `config.json` names an architecture we implement: candle.
//! - `model.onnx`, or `onnx/model.onnx` as hub repositories hold it: ONNX Runtime (any model).
//! - `model.safetensors` of another architecture, with no ONNX file beside it: candle, whose
//!   task check then says which architectures it takes.
//! - anything else: [`Error::UnrecognizedModel`], naming what was looked for and what was found.
//!
//! A bare `.onnx` file is an ONNX model without a folder (preprocessing and labels come from
//! the caller).

use std::path::{Path, PathBuf};

use crate::config::PreprocessorConfig;
use crate::error::{Error, Result};

/// Name of the model configuration file.
pub const CONFIG_FILE: &str = "config.json";
/// Name of the (optional) preprocessing configuration file.
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";
/// Name of the weight file.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Local paths of a checkpoint's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `preprocessor_config.json`, when the checkpoint has one.
    pub preprocessor_config: Option<PathBuf>,
    /// `model.safetensors`.
    pub weights: PathBuf,
}

impl ModelFiles {
    /// The files of a local checkpoint directory; fails with [`Error::MissingFile`] when
    /// `config.json` or `model.safetensors` is absent.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        let need = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::MissingFile { path })
            }
        };
        let config = need(CONFIG_FILE)?;
        let weights = need(WEIGHTS_FILE)?;
        let pre = dir.join(PREPROCESSOR_FILE);
        Ok(ModelFiles {
            config,
            preprocessor_config: pre.is_file().then_some(pre),
            weights,
        })
    }

    /// The checkpoint's `preprocessor_config.json`, or `default(size)` when it has none,
    /// checked to produce the model's `size`x`size` input.
    pub fn preprocessor(
        &self,
        size: u32,
        default: impl FnOnce(u32) -> PreprocessorConfig,
    ) -> Result<PreprocessorConfig> {
        let pre = match &self.preprocessor_config {
            Some(path) => PreprocessorConfig::from_file(path)?,
            None => default(size),
        };
        if pre.height != size || pre.width != size {
            return Err(Error::InvalidConfig {
                path: self
                    .preprocessor_config
                    .clone()
                    .unwrap_or_else(|| self.config.clone()),
                reason: format!(
                    "preprocessor size {}x{} differs from the model's image_size {size}",
                    pre.height, pre.width
                ),
            });
        }
        Ok(pre)
    }
}

/// The ONNX model file of optimum's layout.
pub const ONNX_FILE: &str = "model.onnx";
/// The ONNX model file as hub repositories often hold it.
pub const ONNX_SUBDIR_FILE: &str = "onnx/model.onnx";

/// The files of an ONNX model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxFiles {
    /// The `.onnx` file.
    pub model: PathBuf,
    /// `config.json` (labels in `id2label`), when there is one.
    pub config: Option<PathBuf>,
    /// `preprocessor_config.json`, when there is one.
    pub preprocessor_config: Option<PathBuf>,
}

impl OnnxFiles {
    /// A bare `.onnx` file: no configuration files.
    pub fn bare(model: PathBuf) -> Self {
        Self {
            model,
            config: None,
            preprocessor_config: None,
        }
    }
}

/// A recognised model folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// A safetensors checkpoint for our candle models.
    Candle(ModelFiles),
    /// An ONNX model for ONNX Runtime.
    Onnx(OnnxFiles),
}

impl Checkpoint {
    /// The engine's name: `candle` or `onnxruntime`.
    pub fn engine(&self) -> &'static str {
        match self {
            Checkpoint::Candle(_) => "candle",
            Checkpoint::Onnx(_) => "onnxruntime",
        }
    }

    /// Why this engine, in a few words, for the start-up log.
    pub fn reason(&self) -> String {
        match self {
            Checkpoint::Candle(files) => format!(
                "{} with an architecture candle implements",
                files.weights.display()
            ),
            Checkpoint::Onnx(files) => format!("{} found", files.model.display()),
        }
    }
}

/// Recognises the model in `path`: a folder by its files (see the module docs), with
/// `implemented` the `config.json` architectures our candle models take; or a bare `.onnx`
/// file.
pub fn recognise(path: &Path, implemented: &[&str]) -> Result<Checkpoint> {
    if path.is_file() {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
        {
            return Ok(Checkpoint::Onnx(OnnxFiles::bare(path.to_path_buf())));
        }
        return Err(Error::UnrecognizedModel {
            path: path.to_path_buf(),
            found: vec![],
        });
    }
    let file = |name: &str| Some(path.join(name)).filter(|p| p.is_file());
    let config = file(CONFIG_FILE);
    let weights = file(WEIGHTS_FILE);
    let onnx = file(ONNX_FILE).or_else(|| file(ONNX_SUBDIR_FILE));
    if let (Some(config), Some(_)) = (&config, &weights) {
        let ours = crate::config::architecture(config)
            .map(|arch| implemented.contains(&arch.as_str()))
            .unwrap_or(false);
        if ours || onnx.is_none() {
            return ModelFiles::in_dir(path).map(Checkpoint::Candle);
        }
    }
    if let Some(model) = onnx {
        return Ok(Checkpoint::Onnx(OnnxFiles {
            model,
            config,
            preprocessor_config: file(PREPROCESSOR_FILE),
        }));
    }
    if weights.is_some() {
        // model.safetensors without config.json: candle says which file is missing.
        return ModelFiles::in_dir(path).map(Checkpoint::Candle);
    }
    Err(Error::UnrecognizedModel {
        path: path.to_path_buf(),
        found: listing(path),
    })
}

/// The names in `dir` (and in its `onnx/`), sorted, for the error message.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if e.path().is_dir() {
                        format!("{name}/")
                    } else {
                        name
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn recognises_each_layout() {
        let vit = r#"{"architectures": ["ViTForImageClassification"]}"#;
        let convnext = r#"{"architectures": ["ConvNextForImageClassification"]}"#;
        let ours: &[&str] = &["ViTForImageClassification"];

        let d = tempfile::tempdir().unwrap();
        write(d.path(), "config.json", convnext);
        write(d.path(), "model.onnx", "");
        write(d.path(), "preprocessor_config.json", "{}");
        let Checkpoint::Onnx(files) = recognise(d.path(), ours).unwrap() else {
            panic!("not onnx")
        };
        assert_eq!(files.model, d.path().join("model.onnx"));
        assert_eq!(files.config, Some(d.path().join("config.json")));

        // A hub repository's onnx/model.onnx, next to safetensors of an architecture we lack.
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "config.json", convnext);
        write(d.path(), "model.safetensors", "");
        write(d.path(), "onnx/model.onnx", "");
        let c = recognise(d.path(), ours).unwrap();
        assert_eq!(c.engine(), "onnxruntime");

        // Our architecture in safetensors wins over an ONNX export of it.
        write(d.path(), "config.json", vit);
        assert_eq!(recognise(d.path(), ours).unwrap().engine(), "candle");

        // Nothing we can run: the error names what is there.
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "config.json", vit);
        write(d.path(), "pytorch_model.bin", "");
        let err = recognise(d.path(), ours).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("model.onnx")
                && text.contains("model.safetensors")
                && text.contains("pytorch_model.bin"),
            "{text}"
        );

        // A bare .onnx file.
        let f = d.path().join("exported.ONNX");
        std::fs::write(&f, "").unwrap();
        assert_eq!(
            recognise(&f, ours).unwrap(),
            Checkpoint::Onnx(OnnxFiles::bare(f.clone()))
        );
    }
}
