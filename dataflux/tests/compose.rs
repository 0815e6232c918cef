//! Composed download, fallbacks, temporary-object hygiene, and the dataset API.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use dataflux::compose::cleanup_stale;
use dataflux::store::hooked::{Answer, Call, HookStore};
use dataflux::{
    list, manifest, Dataset, DatasetConfig, Error, FetchOptions, ListOptions, ObjectMeta,
    Operation, PutMode, RetryPolicy, ShardSpec, Store,
};
use futures::StreamExt;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("imgs/{i:04}.jpg")).collect()
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(2)
        .with_initial_backoff(Duration::from_millis(5))
}

async fn dataset(store: Arc<dyn Store>, fetch: FetchOptions) -> Dataset {
    let listing = list(&store, "imgs/", &ListOptions::default())
        .await
        .expect("list");
    Dataset::from_listing(store, listing, DatasetConfig::default().with_fetch(fetch))
}

async fn temporaries(store: &Arc<dyn Store>) -> usize {
    let options = ListOptions::default().with_temp_prefix(String::new());
    list(store, "dataflux-tmp/", &options)
        .await
        .expect("list tmp")
        .objects
        .len()
}

#[tokio::test]
async fn composed_batch_is_exact_and_cheap_and_leaves_nothing() {
    let Some(store) = gcs_store("compose").await else {
        return;
    };
    let names = names(100);
    put_all(&store, &names).await;
    let ds = dataset(store.clone(), FetchOptions::default()).await;
    let before = store.stats().snapshot();
    let all: Vec<usize> = (0..100).collect();
    let got = ds.get_many(&all).await.expect("get_many");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(
            r.as_ref().expect("ok")[..],
            content_of(i, &names[i])[..],
            "{}",
            names[i]
        );
    }
    let s = store.stats().snapshot().since(&before);
    // 100 objects in groups of 32: 4 composes, 4 downloads, 4 deletes.
    assert_eq!(
        (s.compose, s.get, s.delete, s.fallbacks),
        (4, 4, 4, 0),
        "{s}"
    );
    assert_eq!(temporaries(&store).await, 0, "no composite left behind");
    assert_eq!(ds.fetcher().live_temporaries(), 0);
}

#[tokio::test]
async fn size_cap_splits_groups_and_big_objects_use_ranged_gets() {
    let Some(store) = gcs_store("compose-cap").await else {
        return;
    };
    let names = names(10);
    put_all(&store, &names).await;
    let big = Bytes::from((0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    store
        .put("imgs/zz-big.bin", big.clone(), PutMode::Overwrite)
        .await
        .expect("put");
    // Each small object is 13..=39 bytes; a cap of 60 holds two of them at most.
    let fetch = FetchOptions::default()
        .with_max_composite_bytes(60)
        .with_range_chunk_bytes(4096);
    let ds = dataset(store.clone(), fetch).await;
    let groups = ds.fetcher().plan(ds.objects());
    for g in &groups {
        let bytes: u64 = ds.objects()[g.clone()].iter().map(|m| m.size).sum();
        assert!(g.len() == 1 || bytes <= 60, "group {g:?} has {bytes} bytes");
    }
    let before = store.stats().snapshot();
    let got = ds.get(10).await.expect("big object");
    assert_eq!(got, big);
    assert_eq!(
        store.stats().snapshot().since(&before).get,
        3,
        "10,000 bytes in 4,096-byte parts"
    );
    let all: Vec<usize> = (0..ds.len()).collect();
    let results = ds.get_many(&all).await.expect("get_many");
    assert!(results.iter().all(|r| r.is_ok()));
}

#[tokio::test]
async fn a_changed_object_is_reported_and_the_rest_survive() {
    let Some(store) = gcs_store("compose-changed").await else {
        return;
    };
    let names = names(8);
    put_all(&store, &names).await;
    let ds = dataset(store.clone(), FetchOptions::default()).await;
    // Same size, other content: only the CRC32C can tell.
    let len = content_of(3, &names[3]).len();
    store
        .put(&names[3], Bytes::from(vec![b'#'; len]), PutMode::Overwrite)
        .await
        .expect("overwrite");
    let got = ds
        .get_many(&(0..8).collect::<Vec<_>>())
        .await
        .expect("get_many");
    for (i, r) in got.iter().enumerate() {
        if i == 3 {
            let err = r.as_ref().expect_err("changed object");
            assert!(
                matches!(err, Error::Integrity { location, .. } if location.ends_with(&names[3])),
                "{err}"
            );
        } else {
            assert_eq!(r.as_ref().expect("ok")[..], content_of(i, &names[i])[..]);
        }
    }
    assert_eq!(temporaries(&store).await, 0);
}

#[tokio::test]
async fn a_deleted_object_falls_back_to_single_gets() {
    let Some(store) = gcs_store_with_retry("compose-missing", quick_retry()).await else {
        return;
    };
    let names = names(6);
    put_all(&store, &names).await;
    let ds = dataset(store.clone(), FetchOptions::default()).await;
    store.delete(&names[2]).await.expect("delete");
    let got = ds
        .get_many(&(0..6).collect::<Vec<_>>())
        .await
        .expect("get_many");
    assert!(
        got[2].as_ref().is_err_and(|e| e.is_not_found()),
        "{:?}",
        got[2]
    );
    for i in [0, 1, 3, 4, 5] {
        assert_eq!(
            got[i].as_ref().expect("ok")[..],
            content_of(i, &names[i])[..]
        );
    }
    assert_eq!(store.stats().snapshot().fallbacks, 1);
    assert_eq!(temporaries(&store).await, 0);
}

#[tokio::test]
async fn sweep_and_stale_cleanup_remove_leftovers() {
    let Some(store) = gcs_store("compose-sweep").await else {
        return;
    };
    let ds = dataset(store.clone(), FetchOptions::default().with_run_id("run-a")).await;
    for name in [
        "dataflux-tmp/run-a/1-0-0123456789ab",
        "dataflux-tmp/run-a/2-0-0123456789ab",
        "dataflux-tmp/run-b/1000-0-0123456789ab",
    ] {
        store
            .put(name, Bytes::from_static(b"t"), PutMode::Overwrite)
            .await
            .expect("put");
    }
    let fresh = format!(
        "dataflux-tmp/run-c/{}-0-0123456789ab",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    store
        .put(&fresh, Bytes::from_static(b"t"), PutMode::Overwrite)
        .await
        .expect("put");
    assert_eq!(
        ds.fetcher().sweep().await.expect("sweep"),
        2,
        "only this run's"
    );
    assert_eq!(
        cleanup_stale(&store, "dataflux-tmp/", Duration::from_secs(3600))
            .await
            .expect("cleanup"),
        1
    );
    assert_eq!(
        temporaries(&store).await,
        1,
        "the fresh one of another run stays"
    );
}

/// A memory store that claims compose and refuses it, as a bucket without
/// `storage.objects.create` does.
#[tokio::test]
async fn refused_compose_is_switched_off_for_the_run() {
    let inner = paged_memory_store();
    let names = names(70);
    put_all(&inner, &names).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let store: Arc<dyn Store> = Arc::new(
        HookStore::new(inner, move |call| match call {
            Call::Compose(dest) => {
                counted.fetch_add(1, Ordering::SeqCst);
                Answer::Fail(Error::PermissionDenied {
                    operation: Operation::Compose,
                    location: dest.to_string(),
                    message: "403".into(),
                })
            }
            _ => Answer::Forward,
        })
        .with_compose(true),
    );
    let ds = dataset(store.clone(), FetchOptions::default()).await;
    let got = ds
        .get_many(&(0..70).collect::<Vec<_>>())
        .await
        .expect("get_many");
    assert!(got.iter().all(|r| r.is_ok()));
    // The 3 groups are fetched concurrently: each in flight is refused at most once.
    let asked = attempts.load(Ordering::SeqCst);
    assert!((1..=3).contains(&asked), "{asked}");
    assert!(!ds.fetcher().composing());
    assert_eq!(ds.stats().fallbacks as usize, asked);
    // Off for the rest of the run.
    ds.get_many(&(0..70).collect::<Vec<_>>())
        .await
        .expect("get_many");
    assert_eq!(attempts.load(Ordering::SeqCst), asked, "not asked again");
}

#[tokio::test]
async fn stores_without_compose_use_single_gets() {
    let store = paged_memory_store();
    put_all(&store, &names(40)).await;
    let ds = dataset(store.clone(), FetchOptions::default()).await;
    let got = ds.get_many(&[5, 1, 39]).await.expect("get_many");
    assert_eq!(
        got[0].as_ref().expect("ok")[..],
        content_of(5, &names(40)[5])[..]
    );
    let s = ds.stats();
    assert_eq!((s.compose, s.get, s.fallbacks), (0, 3, 0));
    assert!(matches!(
        ds.get(40).await,
        Err(Error::IndexOutOfRange { index: 40, len: 40 })
    ));
}

#[tokio::test]
async fn stream_is_ordered_resumable_and_bounded() {
    for store in [
        paged_memory_store(),
        gcs_store("stream").await.unwrap_or_else(paged_memory_store),
    ] {
        let names = names(150);
        put_all(&store, &names).await;
        let listing = list(&store, "imgs/", &ListOptions::default())
            .await
            .expect("list");
        let config = DatasetConfig::default()
            .with_concurrency(8)
            .with_prefetch_bytes(2048)
            .with_fetch(FetchOptions::default().with_max_composite_bytes(200));
        let ds = Dataset::from_listing(store.clone(), listing, config);
        let mut stream = Box::pin(ds.stream(ds.start()).expect("stream"));
        let mut seen = Vec::new();
        while let Some(item) = stream.next().await {
            assert_eq!(item.index, seen.len(), "in order");
            assert_eq!(
                item.data.expect("ok")[..],
                content_of(item.index, &names[item.index])[..]
            );
            seen.push(item.meta.name);
            if seen.len() == 61 {
                break;
            }
        }
        drop(stream);
        // Restart from the saved position: nothing re-read, nothing skipped.
        let cursor = ds.cursor_at(seen.len());
        let saved: dataflux::Cursor =
            serde_json::from_str(&serde_json::to_string(&cursor).unwrap()).unwrap();
        let rest: Vec<String> = ds
            .stream(saved)
            .expect("stream")
            .map(|i| i.meta.name)
            .collect()
            .await;
        seen.extend(rest);
        assert_eq!(seen, names);
        // A cursor of another dataset is refused.
        let other = ds.shard(ShardSpec::new(0, 2)).expect("shard");
        assert!(other.stream(cursor).is_err());
    }
}

#[tokio::test]
async fn shards_are_disjoint_and_complete() {
    let store = paged_memory_store();
    put_all(&store, &names(101)).await;
    let ds = dataset(store, FetchOptions::default()).await;
    let mut all = Vec::new();
    for rank in 0..4 {
        let shard = ds.shard(ShardSpec::new(rank, 4)).expect("shard");
        assert!((25..=26).contains(&shard.len()));
        all.extend(shard.objects().iter().map(|o| o.name.clone()));
    }
    assert_eq!(all, names(101));
    assert!(ds.shard(ShardSpec::new(4, 4)).is_err());
}

#[tokio::test]
async fn manifest_round_trips_and_rejects_garbage() {
    let Some(store) = gcs_store("manifest").await else {
        return;
    };
    put_all(&store, &names(30)).await;
    let listing = list(&store, "imgs/", &ListOptions::default())
        .await
        .expect("list");
    manifest::save(store.as_ref(), "run/manifest.json", &listing)
        .await
        .expect("save");
    let loaded = manifest::load(store.as_ref(), "run/manifest.json")
        .await
        .expect("load");
    assert_eq!(
        loaded.objects, listing.objects,
        "names, sizes, generations, CRC32C"
    );
    store
        .put(
            "run/bad.json",
            Bytes::from_static(b"{\"format\":\"x\"}"),
            PutMode::Overwrite,
        )
        .await
        .expect("put");
    let err = manifest::load(store.as_ref(), "run/bad.json")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Manifest { location, .. } if location.ends_with("run/bad.json")),
        "{err}"
    );
}

#[tokio::test]
async fn stats_print_requests_by_kind() {
    let store = paged_memory_store();
    put_all(&store, &names(3)).await;
    let text = store.stats().snapshot().to_string();
    assert!(
        text.starts_with("requests 3 (list 0, get 0, head 0, put 3,"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// Edge sizes, compose-limit boundaries, temporary-object hygiene under failure and
// cancellation, and shard partitions on a dataset.

/// Writes `bodies` under `imgs/NNNN.bin` and returns a dataset over them.
async fn dataset_of(store: &Arc<dyn Store>, bodies: &[Vec<u8>], fetch: FetchOptions) -> Dataset {
    futures::future::try_join_all(bodies.iter().enumerate().map(|(i, b)| {
        let store = store.clone();
        let body = Bytes::from(b.clone());
        async move {
            store
                .put(&format!("imgs/{i:04}.bin"), body, PutMode::Overwrite)
                .await
        }
    }))
    .await
    .expect("put");
    dataset(store.clone(), fetch).await
}

fn body(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

#[tokio::test]
async fn zero_byte_objects_come_back_through_every_path() {
    let Some(store) = gcs_store("compose-empty").await else {
        return;
    };
    // Empty objects among others, and a group made only of empty objects.
    let mut bodies: Vec<Vec<u8>> = (0..10)
        .map(|i| if i % 3 == 0 { Vec::new() } else { body(i, 50) })
        .collect();
    bodies.extend((0..5).map(|_| Vec::new()));
    let n = bodies.len();
    for compose in [true, false] {
        for max_objects in [32, 5] {
            let fetch = FetchOptions::default()
                .with_compose(compose)
                .with_max_objects_per_compose(max_objects);
            let ds = dataset_of(&store, &bodies, fetch).await;
            let got = ds
                .get_many(&(0..n).collect::<Vec<_>>())
                .await
                .expect("get_many");
            for (i, r) in got.iter().enumerate() {
                assert_eq!(
                    r.as_ref().expect("ok")[..],
                    bodies[i][..],
                    "object {i}, compose {compose}, groups of {max_objects}"
                );
            }
            assert_eq!(ds.stats().fallbacks, 0, "no group needed a fallback");
            let streamed: Vec<Vec<u8>> = ds
                .stream(ds.start())
                .expect("stream")
                .map(|item| item.data.expect("ok").to_vec())
                .collect()
                .await;
            assert_eq!(streamed, bodies);
            assert_eq!(ds.get(0).await.expect("get").len(), 0);
        }
    }
    assert_eq!(temporaries(&store).await, 0);
}

#[tokio::test]
async fn exactly_32_objects_take_one_compose_and_33_take_two() {
    let Some(store) = gcs_store("compose-32").await else {
        return;
    };
    let bodies: Vec<Vec<u8>> = (0..33).map(|i| body(i, 100 + i)).collect();
    let ds = dataset_of(&store, &bodies, FetchOptions::default()).await;
    for (n, groups) in [(32usize, 1usize), (33, 2)] {
        let before = store.stats().snapshot();
        let got = ds
            .get_many(&(0..n).collect::<Vec<_>>())
            .await
            .expect("get_many");
        let s = store.stats().snapshot().since(&before);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.as_ref().expect("ok")[..], bodies[i][..], "object {i}");
        }
        // 33 = 32 + 1: the lone last object is a plain GET, not a composite of one.
        let gets = if n == 32 { 1 } else { 2 };
        assert_eq!(
            (s.compose, s.get, s.delete, s.fallbacks),
            (1, gets, 1, 0),
            "{n} objects: {s}"
        );
        assert_eq!(ds.fetcher().plan(&ds.objects()[..n]).len(), groups);
    }
    // Groups of exactly 32 sources compose on the server (the GCS limit, not above it).
    let two_groups = FetchOptions::default().with_max_objects_per_compose(32);
    let ds = dataset_of(
        &store,
        &(0..64).map(|i| body(i, 10)).collect::<Vec<_>>(),
        two_groups,
    )
    .await;
    let before = store.stats().snapshot();
    let got = ds
        .get_many(&(0..64).collect::<Vec<_>>())
        .await
        .expect("get_many");
    assert!(got.iter().all(|r| r.is_ok()));
    let s = store.stats().snapshot().since(&before);
    assert_eq!((s.compose, s.get, s.fallbacks), (2, 2, 0), "{s}");
    assert_eq!(temporaries(&store).await, 0);
}

#[tokio::test]
async fn a_failure_between_compose_and_download_leaves_nothing_behind() {
    let Some(inner) = gcs_store("compose-fail-get").await else {
        return;
    };
    let bodies: Vec<Vec<u8>> = (0..70).map(|i| body(i, 20 + i % 9)).collect();
    // Composes on the emulator but fails every read of a temporary object: a failure
    // between compose and download.
    let failed = Arc::new(AtomicUsize::new(0));
    let counted = failed.clone();
    let as_store: Arc<dyn Store> =
        Arc::new(HookStore::new(inner.clone(), move |call| match call {
            Call::Get(name) if name.starts_with("dataflux-tmp/") => {
                counted.fetch_add(1, Ordering::SeqCst);
                Answer::status(call, 503)
            }
            _ => Answer::Forward,
        }));
    let ds = dataset_of(&as_store, &bodies, FetchOptions::default()).await;
    let got = ds
        .get_many(&(0..70).collect::<Vec<_>>())
        .await
        .expect("get_many");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(
            r.as_ref().expect("fallback")[..],
            bodies[i][..],
            "object {i}"
        );
    }
    let s = ds.stats();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        3,
        "3 composites, each read once"
    );
    assert_eq!((s.compose, s.fallbacks), (3, 3), "{s}");
    // The composites existed (compose succeeded) and were deleted anyway.
    assert_eq!(s.delete, 3, "{s}");
    assert_eq!(ds.fetcher().live_temporaries(), 0);
    assert_eq!(
        temporaries(&inner).await,
        0,
        "nothing left under the temp prefix"
    );
}

#[tokio::test]
async fn a_stream_dropped_half_way_leaves_no_temporaries() {
    let Some(store) = gcs_store("compose-drop").await else {
        return;
    };
    let bodies: Vec<Vec<u8>> = (0..400).map(|i| body(i, 200)).collect();
    let fetch = FetchOptions::default().with_max_objects_per_compose(8);
    let ds = dataset_of(&store, &bodies, fetch).await;
    for take in [1, 5, 37] {
        let mut stream = Box::pin(ds.stream(ds.start()).expect("stream"));
        for expected in bodies.iter().take(take) {
            let item = stream.next().await.expect("item");
            assert_eq!(item.data.expect("ok")[..], expected[..]);
        }
        // Dropped with up to 16 composed groups in flight.
        drop(stream);
        let mut left = usize::MAX;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = temporaries(&store).await;
            if left == 0 && ds.fetcher().live_temporaries() == 0 {
                break;
            }
        }
        assert_eq!(
            left, 0,
            "temporaries left after dropping the stream at {take}"
        );
        assert_eq!(ds.fetcher().live_temporaries(), 0);
    }
}

mod shard_prop {
    use super::*;
    use dataflux::shard::ShardMode;
    use dataflux::{Listing, Skipped, Strategy};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn dataset_shards_are_complete_and_disjoint(len in 0usize..300, strided in any::<bool>()) {
            let objects: Vec<ObjectMeta> = (0..len)
                .map(|i| ObjectMeta::new(format!("imgs/{i:05}"), i as u64))
                .collect();
            let listing = Listing {
                prefix: "imgs/".into(),
                objects: objects.clone(),
                skipped: Skipped::default(),
                strategy: Strategy::Sequential,
            };
            let ds = Dataset::from_listing(paged_memory_store(), listing, DatasetConfig::default());
            let mode = if strided { ShardMode::Strided } else { ShardMode::Contiguous };
            for world in 1..=17usize {
                let mut union: Vec<ObjectMeta> = Vec::with_capacity(len);
                let mut sizes = Vec::with_capacity(world);
                for rank in 0..world {
                    let spec = ShardSpec { rank, world_size: world, mode, pad: false };
                    let shard = ds.shard(spec).expect("shard");
                    // Each shard is in listing order.
                    prop_assert!(shard.objects().windows(2).all(|w| w[0].name < w[1].name));
                    sizes.push(shard.len());
                    union.extend(shard.objects().iter().cloned());
                }
                prop_assert_eq!(union.len(), len, "disjoint: no object twice (world {})", world);
                union.sort_by(|a, b| a.name.cmp(&b.name));
                prop_assert_eq!(&union, &objects, "complete (world {})", world);
                let (min, max) = (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
                prop_assert!(max - min <= 1, "balanced (world {})", world);
                prop_assert!(ds.shard(ShardSpec::new(world, world)).is_err());
            }
        }
    }
}

#[tokio::test]
async fn undeletable_composites_switch_compose_off_and_are_named_not_fatal() {
    let Some(inner) = gcs_store("compose-undeletable").await else {
        return;
    };
    let names = names(100);
    put_all(&inner, &names).await;
    // Deletes of temporaries refused: a retention policy, an object hold, no permission.
    let store: Arc<dyn Store> = Arc::new(HookStore::new(inner.clone(), |call| match call {
        Call::Delete(name) if name.starts_with("dataflux-tmp/") => {
            Answer::Fail(Error::PermissionDenied {
                operation: Operation::Delete,
                location: name.to_string(),
                message: "object is under a retention policy".into(),
            })
        }
        _ => Answer::Forward,
    }));
    let ds = dataset(store.clone(), FetchOptions::default()).await;
    let indices: Vec<usize> = (0..100).collect();
    // One group at a time, so the first refused delete decides for the rest.
    for chunk in indices.chunks(32) {
        let got = ds.get_many(chunk).await.expect("get_many");
        for (&i, r) in chunk.iter().zip(got) {
            assert_eq!(r.expect("bytes")[..], content_of(i, &names[i])[..]);
        }
    }
    let left = ds.fetcher().undeletable();
    assert_eq!(
        left.len(),
        1,
        "one composite left behind, then no more: {left:?}"
    );
    assert!(
        !ds.fetcher().composing(),
        "compose is off after a refused delete"
    );
    // The sweep is refused too: an error to log, not a hang or a panic.
    assert!(ds.fetcher().sweep().await.is_err());
}

#[tokio::test]
async fn finish_sweeps_only_where_a_delete_failed() {
    let Some(inner) = gcs_store("compose-finish").await else {
        return;
    };
    let names = names(64);
    put_all(&inner, &names).await;
    // The first delete of a composite fails (after the store's retries, as a 503 storm would
    // leave it); every other one succeeds.
    let failed_once = Arc::new(AtomicUsize::new(0));
    let fail_first = {
        let failed_once = failed_once.clone();
        move |call: &Call<'_>| match call {
            Call::Delete(name)
                if name.starts_with("dataflux-tmp/")
                    && failed_once.fetch_add(1, Ordering::SeqCst) == 0 =>
            {
                Answer::Fail(Error::Request {
                    operation: Operation::Delete,
                    location: name.to_string(),
                    status: Some(503),
                    transient: true,
                    message: "backend error".into(),
                })
            }
            _ => Answer::Forward,
        }
    };
    for (fail, expected_lists) in [(false, 0u64), (true, 1)] {
        failed_once.store(if fail { 0 } else { 1 }, Ordering::SeqCst);
        let store: Arc<dyn Store> = Arc::new(HookStore::new(inner.clone(), fail_first.clone()));
        let counted: Arc<dyn Store> =
            Arc::new(dataflux::store::counting::CountingStore::new(store));
        let ds = dataset(counted.clone(), FetchOptions::default()).await;
        let all: Vec<usize> = (0..names.len()).collect();
        let got = ds.get_many(&all).await.expect("get_many");
        assert!(got.iter().all(|r| r.is_ok()));
        let before = counted.stats().snapshot();
        let swept = ds
            .fetcher()
            .finish(Duration::from_secs(30))
            .await
            .expect("finish");
        let lists = counted.stats().snapshot().since(&before).list;
        assert_eq!(lists, expected_lists, "delete failed: {fail}");
        assert_eq!(swept, usize::from(fail), "delete failed: {fail}");
        assert_eq!(temporaries(&inner).await, 0, "nothing left behind");
    }
}
