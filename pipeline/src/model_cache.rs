//! A checkpoint in a bucket (`gs://`, `s3://`, `file://`, `memory://`), fetched once per node
//! into a shared cache directory, then memory-mapped from there by every rank of the node.
//!
//! Protocol, per checkpoint version (its URL and the names, sizes and generations of its
//! files, hashed: a changed checkpoint is a new directory):
//! 1. List the checkpoint's files (the objects directly under its prefix).
//! 2. Take an exclusive lock on `<cache>/<key>.lock` (`flock`: released by the kernel when the
//!    holder dies, so a SIGKILLed downloader never blocks the node). Every other process of the
//!    node waits here.
//! 3. If `<cache>/<key>/` exists it is complete (step 5 is a rename): use it.
//! 4. Otherwise remove stale partial directories, download every file into
//!    `<cache>/<key>.partial-<unique>/`, and check each file's size (and CRC32C where the
//!    store reports one) against the listing; a short or corrupt file fails the fetch.
//! 5. Rename the partial directory to `<cache>/<key>/`, then unlock. A partial download is
//!    never visible under the final name.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dataflux::{ListOptions, Location, ObjectMeta, Store};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::setting::Setting;
use crate::store_ops::store_call;

/// Where checkpoints from buckets are cached: `--model-cache`, else `$HF_HOME/dataflux`, else
/// `~/.cache/huggingface/dataflux` (next to the hub's own cache).
pub fn default_cache_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join("dataflux");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache/huggingface/dataflux")
}

/// The cache of one node.
#[derive(Debug, Clone)]
pub struct ModelCache {
    root: PathBuf,
    deadline: Duration,
}

impl ModelCache {
    /// A cache under `root`; each store operation may fail transiently for `deadline`.
    pub fn new(root: impl Into<PathBuf>, deadline: Duration) -> Self {
        Self {
            root: root.into(),
            deadline,
        }
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens `location` and fetches its checkpoint; returns the local directory.
    pub async fn fetch(&self, location: &Location) -> Result<PathBuf> {
        // The store gives up where the job's deadline says, not at its own default.
        let retry = dataflux::retry::RetryPolicy::default().with_deadline(self.deadline);
        let store = location
            .open_with_retry(retry)
            .await
            .map_err(|e| Error::store(format!("{} {}", Setting::Model, location.url), e))?;
        self.fetch_from(&store, &location.prefix, &location.url)
            .await
    }

    /// Fetches the checkpoint under `prefix` of `store` (`url` names it in errors and in the
    /// cache key) unless this node has it; returns the local directory.
    pub async fn fetch_from(
        &self,
        store: &Arc<dyn Store>,
        prefix: &str,
        url: &str,
    ) -> Result<PathBuf> {
        let options = ListOptions::default();
        let listing = store_call(self.deadline, "listing the model's files", || {
            dataflux::list(store, prefix, &options)
        })
        .await?;
        let files: Vec<ObjectMeta> = listing
            .objects
            .into_iter()
            .filter(|o| {
                o.name
                    .strip_prefix(prefix)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
            })
            .collect();
        if files.is_empty() {
            return Err(Error::Config {
                setting: Setting::Model,
                reason: format!("{url}: no files there"),
            });
        }
        let key = cache_key(url, &files);
        let io = |what: &str, path: &Path, e: std::io::Error| Error::Config {
            setting: Setting::ModelCache,
            reason: format!("{what} {}: {e}", path.display()),
        };
        std::fs::create_dir_all(&self.root).map_err(|e| io("cannot create", &self.root, e))?;
        let final_dir = self.root.join(&key);
        let lock_path = self.root.join(format!("{key}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("cannot open", &lock_path, e))?;
        // Blocking until the node's downloader is done: off the async workers.
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| Error::Model(format!("model cache lock: {e}")))?
            .map_err(|e| io("cannot lock", &lock_path, e))?;
        let result = self.fill(store, &files, &key, &final_dir, url).await;
        drop(lock);
        result.map(|()| final_dir)
    }

    /// With the lock held: makes `final_dir` hold `files`, unless it already does.
    async fn fill(
        &self,
        store: &Arc<dyn Store>,
        files: &[ObjectMeta],
        key: &str,
        final_dir: &Path,
        url: &str,
    ) -> Result<()> {
        if final_dir.is_dir() {
            tracing::info!(model = url, dir = %final_dir.display(), "model found in the node's cache");
            return Ok(());
        }
        let cache_err = |what: &str, path: &Path, e: std::io::Error| Error::Config {
            setting: Setting::ModelCache,
            reason: format!("{what} {}: {e}", path.display()),
        };
        // Leftovers of a downloader that died: only the lock holder gets here.
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let name = e.file_name();
                if name
                    .to_string_lossy()
                    .starts_with(&format!("{key}.partial-"))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let partial = self
            .root
            .join(format!("{key}.partial-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&partial).map_err(|e| cache_err("cannot create", &partial, e))?;
        let started = std::time::Instant::now();
        // Every file's future runs to its end, even after one fails (the others then skip
        // their download): a writer still running after the partial directory is removed
        // would leave a file, and the directory, behind.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let mut fetches = futures::stream::iter(files)
            .map(|meta| async {
                if failed.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(None);
                }
                let r = self.fetch_file(store, meta, &partial, url).await;
                if r.is_err() {
                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                r.map(Some)
            })
            .buffer_unordered(4);
        let (mut bytes, mut first_error) = (0u64, None);
        while let Some(result) = fetches.next().await {
            match result {
                Ok(n) => bytes += n.unwrap_or(0),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        drop(fetches);
        if let Some(e) = first_error {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, final_dir).map_err(|e| {
            let _ = std::fs::remove_dir_all(&partial);
            cache_err("cannot publish", final_dir, e)
        })?;
        tracing::info!(
            model = url,
            files = files.len(),
            bytes,
            secs = started.elapsed().as_secs_f64(),
            dir = %final_dir.display(),
            "fetched the model into the node's cache"
        );
        Ok(())
    }

    async fn fetch_file(
        &self,
        store: &Arc<dyn Store>,
        meta: &ObjectMeta,
        dir: &Path,
        url: &str,
    ) -> Result<u64> {
        let bytes = store_call(self.deadline, "downloading the model", || {
            store.get(&meta.name, None)
        })
        .await?;
        let corrupt = |reason: String| Error::ModelFetch {
            location: format!("{url} ({})", meta.name),
            reason,
        };
        if bytes.len() as u64 != meta.size {
            return Err(corrupt(format!(
                "{} bytes downloaded, the listing says {}",
                bytes.len(),
                meta.size
            )));
        }
        if let Some(expected) = meta.crc32c {
            let got = crc32c::crc32c(&bytes);
            if got != expected {
                return Err(corrupt(format!(
                    "CRC32C {got:08x}, the listing says {expected:08x}"
                )));
            }
        }
        let file_name = meta.name.rsplit('/').next().unwrap_or(&meta.name);
        let path = dir.join(file_name);
        let write = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = File::create(&path)?;
                f.write_all(&bytes)?;
                f.sync_all()
            })
        };
        write
            .await
            .map_err(|e| Error::Model(format!("model cache writer: {e}")))?
            .map_err(|e| Error::Config {
                setting: Setting::ModelCache,
                reason: format!("cannot write {}: {e}", path.display()),
            })?;
        Ok(meta.size)
    }
}

/// A directory name for this version of the checkpoint: readable tail of the URL, then a hash
/// of the URL and of every file's name, size and generation (or CRC32C).
fn cache_key(url: &str, files: &[ObjectMeta]) -> String {
    let mut h = crc32c::crc32c(url.as_bytes());
    let mut h2 = h.rotate_left(13) ^ 0x9e37_79b9;
    for f in files {
        let line = format!(
            "{}\n{}\n{:?}\n{:?}\n",
            f.name, f.size, f.generation, f.crc32c
        );
        h = crc32c::crc32c_append(h, line.as_bytes());
        h2 = crc32c::crc32c_append(h2.rotate_left(7), line.as_bytes());
    }
    let tail: String = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("model")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    format!("{tail}-{h:08x}{h2:08x}")
}
