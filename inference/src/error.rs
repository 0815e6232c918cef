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
    /// The pipelined classifier's decode thread failed.
    #[error("decode worker stopped: {reason}")]
    Worker {
        /// What happened.
        reason: String,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
