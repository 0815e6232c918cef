//! The run's plan: rank 0 lists the input once and saves it as one manifest object per chunk
//! plus an index (count, chunk size, fingerprint, the run's definition), created create-only
//! so that concurrent rank 0s (a zombie, an overlapping resubmission) agree on one listing.
//! Every other rank reads the index, and then only the manifests of the chunks it works on:
//! its memory does not grow with the dataset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dataflux::{list, manifest, ListOptions, Listing, ObjectMeta, PutMode, Skipped, Store};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::run_store::RunStore;
use crate::store_ops::store_call;

const FORMAT: &str = "dataflux-run-index";
const VERSION: u32 = 1;

/// The run's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Always `dataflux-run-index`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Which listing the chunk manifests belong to.
    pub listing: String,
    /// The listed prefix.
    pub prefix: String,
    /// Objects in the listing.
    pub count: usize,
    /// Objects per chunk (the last may hold fewer).
    pub chunk_size: usize,
    /// Where each chunk starts, when chunks are also closed by bytes (`--chunk-bytes`), so
    /// that they differ in length; absent when every chunk holds `chunk_size` objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<Vec<usize>>,
    /// Identifies the listing's contents (names, sizes, generations).
    pub fingerprint: u64,
    /// What defines the run's results.
    pub definition: BTreeMap<String, String>,
}

impl Index {
    /// Number of chunks.
    pub fn chunks(&self) -> usize {
        match &self.starts {
            Some(starts) => starts.len(),
            None => self.count.div_ceil(self.chunk_size.max(1)),
        }
    }

    /// Listing positions of `chunk`.
    pub fn chunk_range(&self, chunk: usize) -> std::ops::Range<usize> {
        if let Some(starts) = &self.starts {
            let start = starts
                .get(chunk)
                .copied()
                .unwrap_or(self.count)
                .min(self.count);
            let end = starts
                .get(chunk + 1)
                .copied()
                .unwrap_or(self.count)
                .min(self.count);
            return start..end.max(start);
        }
        let start = (chunk * self.chunk_size).min(self.count);
        start..(start + self.chunk_size).min(self.count)
    }
}

/// Where each chunk starts when a chunk holds at most `size` objects and at most `bytes`
/// bytes (an object larger than `bytes` is a chunk of its own).
///
/// ```
/// # use dataflux_pipeline::plan::chunk_starts;
/// assert_eq!(chunk_starts(&[5, 5, 5, 20, 1, 1, 1], 3, 10), [0, 2, 3, 4]);
/// ```
pub fn chunk_starts(sizes: &[u64], size: usize, bytes: u64) -> Vec<usize> {
    let mut starts = Vec::new();
    let (mut n, mut held) = (0usize, 0u64);
    for (i, &s) in sizes.iter().enumerate() {
        if i == 0 || n >= size.max(1) || (n > 0 && held.saturating_add(s) > bytes) {
            starts.push(i);
            n = 0;
            held = 0;
        }
        n += 1;
        held = held.saturating_add(s);
    }
    starts
}

/// What a rank needs to find or make the run's plan.
pub(crate) struct Planner<'a> {
    pub input: &'a Arc<dyn Store>,
    pub input_prefix: &'a str,
    pub run: &'a RunStore,
    pub definition: &'a BTreeMap<String, String>,
    pub chunk_size: usize,
    pub chunk_bytes: Option<u64>,
    pub lister: bool,
}

impl Planner<'_> {
    /// The run's index: read and checked against this job's definition, or (on the lister,
    /// when there is none yet) made from a fresh listing; other ranks wait for it.
    pub async fn index(&self) -> Result<Index> {
        let poller = self.run.poller();
        loop {
            if let Some(index) = self.read_index().await? {
                self.check(&index)?;
                return Ok(index);
            }
            if self.lister {
                if let Some(index) = self.publish().await? {
                    return Ok(index);
                }
                continue; // another lister won: read (and check) its index
            }
            if let Err(waited) = poller.wait().await {
                return Err(Error::Timeout {
                    what: format!(
                        "rank 0 to list the input ({})",
                        self.run.url(&self.run.layout.index())
                    ),
                    waited,
                });
            }
        }
    }

    async fn read_index(&self) -> Result<Option<Index>> {
        let name = self.run.layout.index();
        let bytes = self
            .run
            .get_or_none(&name, "reading the run's index")
            .await?;
        let Some(bytes) = bytes else { return Ok(None) };
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            location: self.run.url(&name),
            reason: e.to_string(),
        })?;
        if index.format != FORMAT || index.version != VERSION {
            return Err(Error::Corrupt {
                location: self.run.url(&name),
                reason: format!("format {:?} version {}", index.format, index.version),
            });
        }
        Ok(Some(index))
    }

    fn check(&self, index: &Index) -> Result<()> {
        let mut changes = Vec::new();
        let keys: std::collections::BTreeSet<&String> = index
            .definition
            .keys()
            .chain(self.definition.keys())
            .collect();
        for key in keys {
            let was = index.definition.get(key).cloned().unwrap_or_default();
            let now = self.definition.get(key).cloned().unwrap_or_default();
            if was != now {
                changes.push((key.clone(), was, now));
            }
        }
        if index.chunk_size != self.chunk_size {
            tracing::warn!(
                run = %self.run.layout.run_id,
                saved = index.chunk_size,
                asked = self.chunk_size,
                "the run's chunk size is fixed when it starts: keeping the saved one"
            );
        }
        if changes.is_empty() {
            Ok(())
        } else {
            Err(Error::DefinitionChanged {
                run_id: self.run.layout.run_id.clone(),
                changes,
            })
        }
    }

    /// Lists, writes the chunk manifests under a fresh listing id, then creates the index.
    /// `None` when another lister's index got there first (ours is then deleted).
    async fn publish(&self) -> Result<Option<Index>> {
        let started = Instant::now();
        let options = ListOptions::default();
        let listing = store_call(self.run.deadline, "listing the input", || {
            list(self.input, self.input_prefix, &options)
        })
        .await?;
        let listing_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let index = Index {
            format: FORMAT.into(),
            version: VERSION,
            listing: listing_id.clone(),
            prefix: listing.prefix.clone(),
            count: listing.objects.len(),
            chunk_size: self.chunk_size,
            starts: self.chunk_bytes.map(|bytes| {
                let sizes: Vec<u64> = listing.objects.iter().map(|o| o.size).collect();
                chunk_starts(&sizes, self.chunk_size, bytes)
            }),
            fingerprint: dataflux::dataset::fingerprint(&listing.objects),
            definition: self.definition.clone(),
        };
        tracing::info!(
            objects = index.count,
            chunks = index.chunks(),
            secs = started.elapsed().as_secs_f64(),
            "listed the input"
        );
        let chunks: Vec<(usize, Bytes)> = (0..index.chunks())
            .map(|c| {
                let part = Listing {
                    prefix: listing.prefix.clone(),
                    objects: listing.objects[index.chunk_range(c)].to_vec(),
                    skipped: Skipped::default(),
                    strategy: listing.strategy,
                };
                manifest::encode(&part).map(|b| (c, b))
            })
            .collect::<dataflux::Result<_>>()
            .map_err(|e| Error::store("encoding the manifest", e))?;
        drop(listing);
        futures::stream::iter(chunks)
            .map(|(c, bytes)| {
                let name = self.run.layout.manifest_chunk(&listing_id, c);
                async move {
                    store_call(self.run.deadline, "writing the manifest", || {
                        self.run.store.put(&name, bytes.clone(), PutMode::Overwrite)
                    })
                    .await
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;
        let body = serde_json::to_vec_pretty(&index).map_err(|e| Error::Corrupt {
            location: self.run.layout.index(),
            reason: e.to_string(),
        })?;
        let index_name = self.run.layout.index();
        let created = self
            .run
            .create(&index_name, Bytes::from(body), "creating the run's index")
            .await?;
        if created {
            return Ok(Some(index));
        }
        tracing::info!("another rank 0 published the run's listing first: using its");
        let dir = self.run.layout.manifest_dir(&listing_id);
        crate::store_ops::delete_all(&self.run.store, &dir, self.run.deadline).await?;
        Ok(None)
    }
}

/// Reads one chunk's objects.
pub(crate) async fn load_chunk(
    run: &RunStore,
    index: &Index,
    chunk: usize,
) -> Result<Vec<ObjectMeta>> {
    let (output, deadline) = (run.store.as_ref(), run.deadline);
    let name = run.layout.manifest_chunk(&index.listing, chunk);
    let bytes = store_call(deadline, "reading a chunk's manifest", || {
        output.get(&name, None)
    })
    .await?;
    let part = manifest::decode(&bytes, &output.object_url(&name))
        .map_err(|e| Error::store("reading a chunk's manifest", e))?;
    let expected = index.chunk_range(chunk).len();
    if part.objects.len() != expected {
        return Err(Error::Corrupt {
            location: output.object_url(&name),
            reason: format!("{} objects, the index says {expected}", part.objects.len()),
        });
    }
    Ok(part.objects)
}
