//! A checkpoint in a bucket, fetched once per node: concurrent loaders download each file
//! once and share one directory; a short download is never published; a changed checkpoint
//! gets a new directory; the job loads a CLIP model from a bucket.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dataflux::store::hooked::{Answer, Call, HookStore};
use dataflux::{Location, PutMode, Store};
use dataflux_pipeline::model_cache::ModelCache;
use dataflux_pipeline::{CheckpointSource, ClipEmbedder, ModelSpec, Task};

const FILES: [&str; 3] = [
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../inference/fixtures/tiny-clip")
            .join(name),
    )
    .unwrap()
}

/// A memory bucket holding the tiny CLIP checkpoint under `models/clip/` (and a file in a
/// sub-folder, which is not part of it).
async fn bucket(name: &str) -> Arc<dyn Store> {
    let store = Location::parse(&format!("memory://{name}"))
        .unwrap()
        .open()
        .await
        .unwrap();
    for f in FILES {
        store
            .put(
                &format!("models/clip/{f}"),
                Bytes::from(fixture(f)),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
    }
    store
        .put(
            "models/clip/old/notes.txt",
            Bytes::from_static(b"x"),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    store
}

/// Counts GETs per call.
fn counting(inner: Arc<dyn Store>, gets: Arc<AtomicUsize>) -> Arc<dyn Store> {
    Arc::new(HookStore::new(inner, move |call| {
        if let Call::Get(_) = call {
            gets.fetch_add(1, Ordering::SeqCst);
        }
        Answer::Forward
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_loaders_on_a_node_download_each_file_once_and_share_the_directory() {
    let store = bucket("cache-once").await;
    let gets = Arc::new(AtomicUsize::new(0));
    let counted = counting(store, gets.clone());
    let dir = tempfile::tempdir().unwrap();
    // Eight caches of one node (one per rank), all polled at once: the lock is taken on
    // blocking threads, so they really contend.
    let caches: Vec<ModelCache> = (0..8)
        .map(|_| ModelCache::new(dir.path(), Duration::from_secs(30)))
        .collect();
    let loaders = caches.iter().map(|cache| {
        cache.fetch_from(&counted, "models/clip/", "memory://cache-once/models/clip/")
    });
    let dirs: Vec<_> = futures::future::join_all(loaders)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(dirs.iter().all(|d| d == &dirs[0]), "{dirs:?}");
    assert_eq!(
        gets.load(Ordering::SeqCst),
        FILES.len(),
        "each file fetched once"
    );
    for f in FILES {
        assert_eq!(std::fs::read(dirs[0].join(f)).unwrap(), fixture(f), "{f}");
    }
    assert!(
        !dirs[0].join("notes.txt").exists(),
        "sub-folders are not part of it"
    );
    // Only the checkpoint's directory and its lock: no partial left behind.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[1].ends_with(".lock") && names[1].starts_with(&names[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_download_is_never_used_and_the_next_try_completes() {
    let store = bucket("cache-short").await;
    let cut = Arc::new(AtomicUsize::new(0));
    let c = cut.clone();
    let faulty: Arc<dyn Store> = Arc::new(HookStore::new(store.clone(), move |call| match call {
        Call::Get(name)
            if name.ends_with("model.safetensors") && c.fetch_add(1, Ordering::SeqCst) == 0 =>
        {
            Answer::CutBody
        }
        _ => Answer::Forward,
    }));
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::new(dir.path(), Duration::from_secs(30));
    let url = "memory://cache-short/models/clip/";
    let err = cache
        .fetch_from(&faulty, "models/clip/", url)
        .await
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    // Nothing but the lock: the partial directory is gone, no final directory exists.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".lock"));
    let got = cache
        .fetch_from(&faulty, "models/clip/", url)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(got.join("model.safetensors")).unwrap(),
        fixture("model.safetensors")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_checkpoint_gets_a_new_directory() {
    let store = bucket("cache-new").await;
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::new(dir.path(), Duration::from_secs(30));
    let url = "memory://cache-new/models/clip/";
    let first = cache.fetch_from(&store, "models/clip/", url).await.unwrap();
    let mut config = fixture("config.json");
    config.extend_from_slice(b"\n");
    store
        .put(
            "models/clip/config.json",
            Bytes::from(config.clone()),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    let second = cache.fetch_from(&store, "models/clip/", url).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(std::fs::read(second.join("config.json")).unwrap(), config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedder_loads_from_a_bucket_and_records_the_bucket_url() {
    let _store = bucket("cache-load").await;
    let dir = tempfile::tempdir().unwrap();
    let spec = ModelSpec::default()
        .with_checkpoint(CheckpointSource::Bucket {
            location: Location::parse("memory://cache-load/models/clip/").unwrap(),
            cache: Some(dir.path().to_path_buf()),
        })
        .with_task(Task::Embed);
    let model = ClipEmbedder::load(&spec).await.unwrap();
    assert_eq!(model.embedder().dim(), 16);
    let def = dataflux_pipeline::BatchModel::definition(&model);
    assert_eq!(def["source"], "memory://cache-load/models/clip/");
    // Asked to classify, the same bucket checkpoint is a configuration error.
    let err = dataflux_pipeline::VitClassifier::load(&spec.with_task(Task::Classify))
        .await
        .unwrap_err();
    assert!(
        err.is_config() && err.to_string().contains("CLIPModel"),
        "{err}"
    );
}
