//! The crate's error types: [`Error`] for loading and running a model, [`PreprocessError`] for
//! one image that cannot be turned into model input.

use std::path::PathBuf;

/// Why one image could not be decoded or prepared.
///
/// Each variant has a short, stable name from [`PreprocessError::kind`] that a pipeline can write
/// as an `error_kind` column next to the image id.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The bytes are not in a format we decode (JPEG, PNG, WebP, GIF, BMP, TIFF).
    #[error("unrecognised image format (first bytes {magic:02x?})")]
    UnknownFormat {
        /// Up to the first eight bytes of the input, for the log.
        magic: Vec<u8>,
    },
    /// The format is recognised but this image uses a feature the decoder does not support.
    #[error("unsupported image: {reason}")]
    Unsupported {
        /// What the decoder said.
        reason: String,
    },
    /// The image is corrupt or truncated.
    #[error("cannot decode image: {reason}")]
    Decode {
        /// What the decoder said.
        reason: String,
    },
    /// The header announces more pixels than the [`crate::DecodeLimits`] allow (a decompression
    /// bomb or simply a huge image); nothing was allocated for it.
    #[error("image of {width}x{height} exceeds the decode limits")]
    TooLarge {
        /// Width announced by the header.
        width: u32,
        /// Height announced by the header.
        height: u32,
    },
    /// The decoder would need more memory than [`crate::DecodeLimits::max_alloc_bytes`].
    #[error("decoding this image needs more than the {limit_bytes} bytes allowed")]
    AllocationLimit {
        /// The configured allocation limit.
        limit_bytes: u64,
    },
    /// The image has a zero width or height.
    #[error("image has an empty dimension ({width}x{height})")]
    Empty {
        /// Decoded width.
        width: u32,
        /// Decoded height.
        height: u32,
    },
    /// The resizer refused the image (should not happen for valid sizes).
    #[error("cannot resize {width}x{height} image: {reason}")]
    Resize {
        /// Source width.
        width: u32,
        /// Source height.
        height: u32,
        /// What the resizer said.
        reason: String,
    },
}

impl PreprocessError {
    /// A short, stable, machine-readable name for the error (`"decode"`, `"too_large"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            PreprocessError::UnknownFormat { .. } => "unknown_format",
            PreprocessError::Unsupported { .. } => "unsupported",
            PreprocessError::Decode { .. } => "decode",
            PreprocessError::TooLarge { .. } => "too_large",
            PreprocessError::AllocationLimit { .. } => "too_large",
            PreprocessError::Empty { .. } => "empty",
            PreprocessError::Resize { .. } => "resize",
        }
    }
}

/// Errors from loading a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the model needs is not in the directory or repository.
    #[error("model file {path} is missing")]
    MissingFile {
        /// Where we looked.
        path: PathBuf,
    },
    /// A model file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` or `preprocessor_config.json` is not valid JSON of the expected shape.
    #[error("invalid {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration value is out of range or inconsistent (e.g. heads do not divide hidden size).
    #[error("invalid configuration in {path}: {reason}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `config.json` describes a model that is not a `ViTForImageClassification`.
    #[error("{path} describes {found}, not a ViTForImageClassification")]
    WrongArchitecture {
        /// The config file.
        path: PathBuf,
        /// The architecture or model type found.
        found: String,
    },
    /// A weight the architecture needs is not in `model.safetensors`.
    #[error("weight {name} is missing from {path}")]
    MissingWeight {
        /// The safetensors file.
        path: PathBuf,
        /// Hugging Face name of the tensor.
        name: String,
    },
    /// A weight has a different shape from the one the config implies.
    #[error("weight {name} in {path} has shape {found:?}, config implies {expected:?}")]
    ShapeMismatch {
        /// The safetensors file.
        path: PathBuf,
        /// Hugging Face name of the tensor.
        name: String,
        /// Shape implied by `config.json`.
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
    /// The safetensors file cannot be opened or memory-mapped.
    #[error("cannot load weights from {path}: {source}")]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: candle_core::Error,
    },
    /// Fetching a file from the Hugging Face hub failed.
    #[error("cannot fetch {file} from hub repo {repo}: {source}")]
    Hub {
        /// Repository id.
        repo: String,
        /// File in the repository.
        file: String,
        /// The hub client's error.
        #[source]
        source: Box<hf_hub::HFError>,
    },
    /// The Hugging Face hub gave no answer (no network, DNS, a proxy or firewall, a timeout):
    /// nothing was fetched. Said in one line, the request's URL left out; a checkpoint that is
    /// a local directory needs no hub.
    #[error("cannot reach the Hugging Face hub at {endpoint} to fetch {repo} ({reason})")]
    HubUnreachable {
        /// Repository id.
        repo: String,
        /// The hub's URL (`HF_ENDPOINT`, or `https://huggingface.co`).
        endpoint: String,
        /// The innermost cause (`Connection refused (os error 111)`, a DNS failure, …).
        reason: String,
    },
    /// A device string is not `auto`, `cpu` or `cuda:N`.
    #[error("invalid device {spec:?}: expected auto, cpu, cuda or cuda:N")]
    InvalidDevice {
        /// The string given.
        spec: String,
    },
    /// The requested device cannot be opened (CUDA not compiled in, no driver, bad ordinal).
    #[error("device {spec} is unavailable: {reason}")]
    DeviceUnavailable {
        /// The device asked for.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A precision that is not a float type, or not one this device supports.
    #[error("unsupported dtype {dtype:?} on {device}")]
    UnsupportedDtype {
        /// The dtype asked for.
        dtype: candle_core::DType,
        /// The device.
        device: String,
    },
    /// An input image does not have the size the model expects.
    #[error("image {index} has {found} values, the model expects {expected} (3x{size}x{size})")]
    InputSize {
        /// Position of the image in the batch.
        index: usize,
        /// Number of values expected.
        expected: usize,
        /// Number of values given.
        found: usize,
        /// Model image size.
        size: usize,
    },
    /// An image could not be decoded or prepared.
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// A tensor operation failed while running the model.
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A model path holds nothing we can run.
    #[error("{} holds no model we can run: looked for model.onnx, onnx/model.onnx (ONNX Runtime) and config.json with model.safetensors (candle), or a .onnx file; found {}", .path.display(), if .found.is_empty() { "nothing".to_string() } else { .found.join(", ") })]
    UnrecognizedModel {
        /// The folder or file.
        path: PathBuf,
        /// What is in the folder.
        found: Vec<String>,
    },
    /// The ONNX Runtime library is not where we look for it.
    #[error("ONNX Runtime (libonnxruntime.so) not found (looked in: {}); install it with `pip install onnxruntime` (onnxruntime-gpu for CUDA) in the active Python environment, or set ORT_DYLIB_PATH to the library file", .looked.join("; "))]
    OnnxRuntimeMissing {
        /// Where we looked.
        looked: Vec<String>,
    },
    /// The ONNX Runtime library cannot be used (an older version than `ort` needs, a file that
    /// is not the library).
    #[error("ONNX Runtime library {}: {reason}", .path.display())]
    OnnxRuntimeLibrary {
        /// The library file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// ONNX Runtime failed while running a model.
    #[error("ONNX Runtime: {what}: {reason}")]
    OnnxRuntime {
        /// What we were doing.
        what: String,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// An execution provider (CUDA) cannot be registered: we never fall back to the CPU.
    #[error("ONNX Runtime's {provider} cannot be used: {reason}")]
    OnnxProvider {
        /// The provider.
        provider: String,
        /// Why (a missing library, no device).
        reason: String,
    },
    /// An ONNX model we cannot run as an image model (its inputs, or no output for the task).
    #[error("cannot run {}: {reason}", .path.display())]
    OnnxModel {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// This build lacks a cargo feature the model needs.
    #[error(
        "{what} needs the cargo feature {feature} of dataflux-inference, which this build lacks"
    )]
    FeatureDisabled {
        /// What needed it.
        what: String,
        /// The feature.
        feature: &'static str,
    },
    /// The pipelined classifier's decode thread failed.
    #[error("decode worker stopped: {reason}")]
    Worker {
        /// What happened.
        reason: String,
    },
}

impl Error {
    /// Whether this is an error of the model's set-up (its files, the library or device it
    /// needs), which no retry fixes: a binary reports it as a configuration error.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Error::MissingFile { .. }
                | Error::Json { .. }
                | Error::InvalidConfig { .. }
                | Error::WrongArchitecture { .. }
                | Error::MissingWeight { .. }
                | Error::ShapeMismatch { .. }
                | Error::Weights { .. }
                | Error::InvalidDevice { .. }
                | Error::DeviceUnavailable { .. }
                | Error::UnsupportedDtype { .. }
                | Error::UnrecognizedModel { .. }
                | Error::OnnxRuntimeMissing { .. }
                | Error::OnnxRuntimeLibrary { .. }
                | Error::OnnxProvider { .. }
                | Error::OnnxModel { .. }
                | Error::FeatureDisabled { .. }
        )
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
