//! The uploader: a local folder to a bucket prefix, in parallel, with retries (the store
//! layer's), skipping objects already there with the same size.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use dataflux::{list, ListOptions, Location, PutMode, Store};
use futures::StreamExt;

/// How to upload.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Concurrent uploads.
    pub concurrency: usize,
    /// Name objects like the GKE tutorial: the file stem without leading zeros
    /// (`000000139.jpg` → `139.jpg`), under an extra random folder when `unique_folder`.
    pub strip_leading_zeros: bool,
    /// Put everything under a new `<uuid>/` folder (the tutorial does).
    pub unique_folder: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            strip_leading_zeros: false,
            unique_folder: false,
        }
    }
}

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Files uploaded.
    pub uploaded: usize,
    /// Files skipped because an object of the same name and size was there.
    pub skipped: usize,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// The object name for a file at `relative` (a path under the source folder).
///
/// ```
/// use dataflux_examples::upload::object_name;
/// assert_eq!(object_name("imgs/", "a/000000139.jpg", true), "imgs/a/139.jpg");
/// assert_eq!(object_name("imgs/", "a/000000139.jpg", false), "imgs/a/000000139.jpg");
/// assert_eq!(object_name("", "0000.png", true), "0.png");
/// ```
pub fn object_name(prefix: &str, relative: &str, strip_leading_zeros: bool) -> String {
    let (dir, file) = match relative.rsplit_once('/') {
        Some((d, f)) => (format!("{d}/"), f),
        None => (String::new(), relative),
    };
    let file = if strip_leading_zeros {
        let (stem, ext) = file
            .split_once('.')
            .map_or((file, None), |(s, e)| (s, Some(e)));
        let trimmed = stem.trim_start_matches('0');
        let stem = if trimmed.is_empty() && !stem.is_empty() {
            "0"
        } else {
            trimmed
        };
        match ext {
            Some(e) => format!("{stem}.{e}"),
            None => stem.to_string(),
        }
    } else {
        file.to_string()
    };
    format!("{prefix}{dir}{file}")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Uploads every file under `source` to `dest` (a URL with prefix).
pub async fn upload(source: &Path, dest: &str, options: &UploadOptions) -> Result<UploadReport> {
    let location = Location::parse(dest)?;
    let store: Arc<dyn Store> = location.open_for_write().await?;
    let mut prefix = location.prefix.clone();
    if options.unique_folder {
        prefix = format!("{prefix}{}/", uuid::Uuid::new_v4());
    }
    let existing: HashMap<String, u64> = list(&store, &prefix, &ListOptions::default())
        .await?
        .objects
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    let mut files = Vec::new();
    walk(source, &mut files)?;
    files.sort();
    let mut report = UploadReport::default();
    let mut work = Vec::new();
    for path in files {
        let relative = path
            .strip_prefix(source)
            .with_context(|| format!("{} is outside {}", path.display(), source.display()))?
            .to_string_lossy()
            .replace('\\', "/");
        let name = object_name(&prefix, &relative, options.strip_leading_zeros);
        let size = std::fs::metadata(&path)?.len();
        if existing.get(&name) == Some(&size) {
            report.skipped += 1;
        } else {
            work.push((path, name));
        }
    }
    let uploads: Vec<_> = work
        .into_iter()
        .map(|(path, name)| {
            let store = store.clone();
            async move {
                let data = tokio::fs::read(&path)
                    .await
                    .with_context(|| format!("reading {}", path.display()))?;
                let len = data.len() as u64;
                store
                    .put(&name, Bytes::from(data), PutMode::Overwrite)
                    .await
                    .with_context(|| format!("uploading {}", path.display()))?;
                Ok::<u64, anyhow::Error>(len)
            }
        })
        .collect();
    let mut results = futures::stream::iter(uploads).buffer_unordered(options.concurrency.max(1));
    while let Some(r) = results.next().await {
        report.bytes += r?;
        report.uploaded += 1;
    }
    Ok(report)
}
