//! Where a checkpoint comes from: a Hugging Face hub repository (through `hf-hub` and its cache)
//! or a local directory, and the three files we read from it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::device::{check_dtype, default_dtype};
use crate::error::{Error, Result};
use crate::folder::{Checkpoint, OnnxFiles, ONNX_FILE, ONNX_SUBDIR_FILE};
pub use crate::folder::{ModelFiles, CONFIG_FILE, PREPROCESSOR_FILE, WEIGHTS_FILE};

/// A checkpoint location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A hub repository such as `google/vit-base-patch16-224`, at a branch, tag or commit
    /// (`main` when `None`).
    Hub {
        /// `owner/name`.
        repo: String,
        /// Branch, tag or commit hash.
        revision: Option<String>,
    },
    /// A directory holding `config.json`, `model.safetensors` and optionally
    /// `preprocessor_config.json`.
    Local(PathBuf),
}

impl FromStr for ModelSource {
    type Err = std::convert::Infallible;

    /// An existing directory is [`ModelSource::Local`]; anything else is a hub repository id,
    /// optionally followed by `@revision`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let path = Path::new(s);
        if path.is_dir() {
            return Ok(ModelSource::Local(path.to_path_buf()));
        }
        Ok(match s.split_once('@') {
            Some((repo, rev)) => ModelSource::Hub {
                repo: repo.to_string(),
                revision: Some(rev.to_string()),
            },
            None => ModelSource::Hub {
                repo: s.to_string(),
                revision: None,
            },
        })
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Hub {
                repo,
                revision: Some(rev),
            } => write!(f, "{repo}@{rev}"),
            ModelSource::Hub {
                repo,
                revision: None,
            } => write!(f, "{repo}"),
            ModelSource::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How to reach the hub. `HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT` and `HF_TOKEN` are read by
/// `hf-hub` itself when the fields here are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Never use the network: files must be in the cache. [`LoadOptions::from_env`] sets it from
    /// `HF_HUB_OFFLINE` (which hf-hub 1.0 ignores).
    pub offline: bool,
    /// Always ask the hub for the current revision, even when the cache has the files. By
    /// default a cached file is used without any network request, so a cached branch is not
    /// refreshed; pin a commit or set this to follow a branch.
    pub refresh: bool,
    /// Cache directory (default: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Hub URL (default: `HF_ENDPOINT`, else `https://huggingface.co`).
    pub endpoint: Option<String>,
    /// Access token (default: `HF_TOKEN` or the token file).
    pub token: Option<String>,
}

/// Chainable setters, one per field: callers build it as `LoadOptions::default().with_…(…)`, so
/// that new fields do not break them.
impl LoadOptions {
    /// Sets [`offline`](Self::offline): never use the network.
    #[must_use]
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Sets [`refresh`](Self::refresh): always ask the hub for the current revision, even when the
    /// cache has the files.
    #[must_use]
    pub fn with_refresh(mut self, refresh: bool) -> Self {
        self.refresh = refresh;
        self
    }

    /// Sets [`cache_dir`](Self::cache_dir): cache directory (default: `HF_HUB_CACHE`, else
    /// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    #[must_use]
    pub fn with_cache_dir(mut self, cache_dir: Option<PathBuf>) -> Self {
        self.cache_dir = cache_dir;
        self
    }

    /// Sets [`endpoint`](Self::endpoint): hub URL (default: `HF_ENDPOINT`, else
    /// `https://huggingface.co`).
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Sets [`token`](Self::token): access token (default: `HF_TOKEN` or the token file).
    #[must_use]
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }
}

impl LoadOptions {
    /// Defaults, with `offline` set when `HF_HUB_OFFLINE` is `1`, `true`, `yes` or `on`.
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| is_truthy(&v))
            .unwrap_or(false);
        LoadOptions::default().with_offline(offline)
    }
}

fn is_truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// Fetching a checkpoint's files (the struct and its local reading are [`crate::folder`]'s).
impl ModelFiles {
    /// [`ModelFiles::fetch`] for synchronous callers: the download runs on a private runtime in
    /// a helper thread, so this is also safe (but blocking) inside an async runtime.
    pub fn fetch_blocking(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        match source {
            ModelSource::Local(dir) => Self::in_dir(dir),
            ModelSource::Hub { .. } => std::thread::scope(|s| {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| Error::Worker {
                            reason: format!("cannot start a runtime for the download: {e}"),
                        })?;
                    rt.block_on(Self::fetch(source, options))
                })
                .join()
                .map_err(|_| Error::Worker {
                    reason: "model download thread panicked".into(),
                })?
            }),
        }
    }

    /// Resolves `source` to local files, downloading from the hub into its cache when needed.
    pub async fn fetch(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        let hub = match source {
            ModelSource::Local(dir) => return Self::in_dir(dir),
            ModelSource::Hub { repo, revision } => Hub::new(repo, revision, options)?,
        };
        let config = hub.get(CONFIG_FILE).await?;
        hub.candle_files(config).await
    }
}

/// Fetches the model of `source` and recognises it ([`crate::folder::recognise`]): a local
/// folder or `.onnx` file by its files; a hub repository by its `config.json` (an architecture
/// in `implemented` is fetched as safetensors for candle) and then by `model.onnx` or
/// `onnx/model.onnx` (for ONNX Runtime), falling back to the safetensors.
pub async fn fetch_checkpoint(
    source: &ModelSource,
    options: &LoadOptions,
    implemented: &[&str],
) -> Result<Checkpoint> {
    let hub = match source {
        ModelSource::Local(path) => return crate::folder::recognise(path, implemented),
        ModelSource::Hub { repo, revision } => Hub::new(repo, revision, options)?,
    };
    let config = hub.get(CONFIG_FILE).await?;
    let ours = crate::config::architecture(&config)
        .map(|a| implemented.contains(&a.as_str()))
        .unwrap_or(false);
    if !ours {
        for name in [ONNX_FILE, ONNX_SUBDIR_FILE] {
            match hub.get_optional(name).await? {
                Some(model) => {
                    // A model over 2 GB keeps its weights beside it (external data), under the
                    // name optimum and torch.onnx give it; it lands in the same snapshot folder.
                    hub.get_optional(&format!("{name}_data")).await?;
                    return Ok(Checkpoint::Onnx(OnnxFiles {
                        model,
                        config: Some(config),
                        preprocessor_config: hub.get_optional(PREPROCESSOR_FILE).await?,
                    }));
                }
                None => continue,
            }
        }
    }
    hub.candle_files(config).await.map(Checkpoint::Candle)
}

/// One hub repository at one revision, read through hf-hub's cache.
struct Hub {
    repo: String,
    endpoint: String,
    handle: hf_hub::HFRepository<hf_hub::RepoTypeModel>,
    revision: Option<String>,
    offline: bool,
    refresh: bool,
}

impl Hub {
    fn new(repo: &str, revision: &Option<String>, options: &LoadOptions) -> Result<Self> {
        let mut builder = hf_hub::HFClient::builder();
        if let Some(dir) = &options.cache_dir {
            builder = builder.cache_dir(dir.clone());
        }
        if let Some(endpoint) = &options.endpoint {
            builder = builder.endpoint(endpoint.clone());
        }
        if let Some(token) = &options.token {
            builder = builder.token(token.clone());
        }
        let client = builder
            .build()
            .map_err(|e| hub_error(repo, "", CONFIG_FILE, e))?;
        let (owner, name) = hf_hub::split_id(repo);
        Ok(Hub {
            repo: repo.to_string(),
            endpoint: client.endpoint().to_string(),
            handle: client.model(owner, name),
            revision: revision.clone(),
            offline: options.offline,
            refresh: options.refresh,
        })
    }

    /// A file of the repository: from the cache unless refreshing, else downloaded.
    async fn fetch(&self, file: &str) -> std::result::Result<PathBuf, hf_hub::HFError> {
        if !self.refresh || self.offline {
            let cached = self
                .handle
                .download_file()
                .filename(file)
                .maybe_revision(self.revision.clone())
                .local_files_only(true)
                .send()
                .await;
            if self.offline || cached.is_ok() {
                return cached;
            }
        }
        self.handle
            .download_file()
            .filename(file)
            .maybe_revision(self.revision.clone())
            .send()
            .await
    }

    async fn get(&self, file: &str) -> Result<PathBuf> {
        self.fetch(file)
            .await
            .map_err(|e| hub_error(&self.repo, &self.endpoint, file, e))
    }

    /// A file the repository may lack: `None` when it does.
    async fn get_optional(&self, file: &str) -> Result<Option<PathBuf>> {
        match self.fetch(file).await {
            Ok(p) => Ok(Some(p)),
            Err(
                hf_hub::HFError::EntryNotFound { .. } | hf_hub::HFError::LocalEntryNotFound { .. },
            ) => Ok(None),
            Err(e) => Err(hub_error(&self.repo, &self.endpoint, file, e)),
        }
    }

    /// The safetensors checkpoint whose `config.json` is already fetched.
    async fn candle_files(&self, config: PathBuf) -> Result<ModelFiles> {
        let weights = self.get(WEIGHTS_FILE).await?;
        let preprocessor_config = self.get_optional(PREPROCESSOR_FILE).await?;
        Ok(ModelFiles {
            config,
            preprocessor_config,
            weights,
        })
    }
}

/// A hub client's error as ours: a request that got no answer (the connection refused or
/// reset, DNS, TLS, a timeout) is [`Error::HubUnreachable`], in one line with its innermost
/// cause; anything else (an HTTP status, a file not in the cache) is [`Error::Hub`].
fn hub_error(repo: &str, endpoint: &str, file: &str, source: hf_hub::HFError) -> Error {
    if let hf_hub::HFError::Request {
        source: request, ..
    } = &source
    {
        return Error::HubUnreachable {
            repo: repo.to_string(),
            endpoint: endpoint.to_string(),
            reason: innermost_cause(request),
        };
    }
    Error::Hub {
        repo: repo.to_string(),
        file: file.to_string(),
        source: Box::new(source),
    }
}

/// The last error of `e`'s source chain, which says what happened without the request's
/// URL (`Connection refused (os error 111)`).
fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Memory-maps the checkpoint's weights on `device` in `dtype` (default: f32 on CPU, bf16 on
/// CUDA), checking that the device supports it; returns the builder and the weight file.
pub(crate) fn open_weights<'a>(
    files: &'a ModelFiles,
    device: &Device,
    dtype: Option<DType>,
) -> Result<(VarBuilder<'static>, &'a Path)> {
    let dtype = dtype.unwrap_or_else(|| default_dtype(device));
    check_dtype(device, dtype)?;
    let weights = files.weights.as_path();
    if !weights.is_file() {
        return Err(Error::MissingFile {
            path: weights.to_path_buf(),
        });
    }
    // SAFETY: the file is mapped read-only; like every safetensors user we rely on it not
    // being truncated or rewritten while the model is alive.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, device) }.map_err(
        |source| Error::Weights {
            path: weights.to_path_buf(),
            source,
        },
    )?;
    Ok((vb, weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            "google/vit-base-patch16-224".parse::<ModelSource>().ok(),
            Some(ModelSource::Hub {
                repo: "google/vit-base-patch16-224".into(),
                revision: None
            })
        );
        assert_eq!(
            "google/vit@abc".parse::<ModelSource>().ok(),
            Some(ModelSource::Hub {
                repo: "google/vit".into(),
                revision: Some("abc".into())
            })
        );
        let dir = env!("CARGO_MANIFEST_DIR");
        assert_eq!(
            dir.parse::<ModelSource>().ok(),
            Some(ModelSource::Local(PathBuf::from(dir)))
        );
    }

    /// A hub that refuses connections (a closed local port, through `LoadOptions::endpoint`
    /// as `HF_ENDPOINT` would set it): one line that says so, without the request's URL.
    #[tokio::test]
    async fn an_unreachable_hub_is_said_in_one_line() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let cache = tempfile::tempdir().unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let options = LoadOptions::default()
            .with_cache_dir(Some(cache.path().to_path_buf()))
            .with_endpoint(Some(endpoint.clone()))
            .with_token(Some("unused".into()));
        let source: ModelSource = "google/vit-base-patch16-224".parse().unwrap();
        let err = ModelFiles::fetch(&source, &options).await.unwrap_err();
        let Error::HubUnreachable {
            ref repo,
            endpoint: ref at,
            ref reason,
        } = err
        else {
            panic!("not HubUnreachable: {err}");
        };
        assert_eq!(
            (repo.as_str(), at.as_str()),
            ("google/vit-base-patch16-224", endpoint.as_str())
        );
        assert!(!reason.is_empty());
        let message = err.to_string();
        assert!(
            !message.contains('\n') && !message.contains("resolve/main"),
            "{message}"
        );
    }

    #[test]
    fn truthy_values() {
        assert!(is_truthy("1") && is_truthy("TRUE") && is_truthy(" on "));
        assert!(!is_truthy("0") && !is_truthy("") && !is_truthy("false"));
    }
}
