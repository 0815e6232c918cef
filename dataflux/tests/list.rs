//! Listing behaviour, run on the GCS emulator, a paged memory store and a local directory.

mod common;

use std::sync::Arc;

use common::*;
use dataflux::{list, Error, ListOptions, Store, Strategy};

/// Names chosen to stress split points: shared prefixes, names that are prefixes of others,
/// punctuation, non-ASCII, deep nesting.
fn tricky_names(n: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..n).map(|i| format!("data/img_{i:05}.jpg")).collect();
    names.extend(
        [
            "data/ab",
            "data/ab0",
            "data/a/b.txt",
            "data/a/b/c.png",
            "data/Z",
            "data/~tilde",
            "data/é.jpg",
            "data/ü/ß.png",
            "data/0",
            "data/00",
            "data/x y.jpg",
            "data/x+y.jpg",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    names
}

async fn check_listing(store: Arc<dyn Store>, parallelism: usize, race: bool, page: usize) {
    // Only GCS has directory markers; object_store paths cannot end in `/`.
    let gcs = store.url().starts_with("gs://");
    let mut names = tricky_names(230);
    put_all(&store, &names).await;
    // Never listed: a directory marker, temporary objects, and a sibling prefix.
    let extra: Vec<String> = [
        "data/sub/",
        "data/dataflux-tmp/x",
        "dataflux-tmp/run/1",
        "data2/img.jpg",
    ]
    .iter()
    .filter(|s| gcs || !s.ends_with('/'))
    .map(|s| s.to_string())
    .collect();
    put_all(&store, &extra).await;
    let options = ListOptions {
        parallelism,
        page_size: page,
        race_sequential: race,
        temp_prefix: "data/dataflux-tmp/".into(),
    };
    let listing = list(&store, "data/", &options).await.expect("list");
    names.sort();
    let got: Vec<&str> = listing.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(got, names, "sorted, complete, no duplicates");
    assert_eq!(listing.skipped.directory_markers, u64::from(gcs));
    assert_eq!(listing.skipped.temporary, 1);
    // Sizes come back as written.
    let mut written = tricky_names(230);
    for o in &listing.objects {
        let i = written
            .iter()
            .position(|n| n == &o.name)
            .expect("listed name");
        assert_eq!(o.size as usize, content_of(i, &o.name).len(), "{}", o.name);
        written[i].clear();
    }
}

#[tokio::test]
async fn parallel_listing_on_emulator_is_exact() {
    let Some(store) = gcs_store("list-par").await else {
        return;
    };
    check_listing(store.clone(), 8, false, 7).await;
    let listing = list(
        &store,
        "data/",
        &ListOptions {
            parallelism: 8,
            page_size: 7,
            race_sequential: false,
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(listing.strategy, Strategy::Parallel);
    // GCS listings carry generation and CRC32C.
    let first = &listing.objects[0];
    assert!(first.generation.is_some(), "generation listed");
    let body = store.get(&first.name, None).await.expect("get");
    assert_eq!(first.crc32c, Some(crc32c::crc32c(&body)), "crc32c listed");
}

#[tokio::test]
async fn raced_listing_on_emulator_is_exact() {
    let Some(store) = gcs_store("list-race").await else {
        return;
    };
    check_listing(store, 16, true, 10).await;
}

#[tokio::test]
async fn sequential_listing_pages_with_max_results_on_emulator() {
    let Some(store) = gcs_store("list-seq").await else {
        return;
    };
    let names: Vec<String> = (0..50).map(|i| format!("p/{i:03}")).collect();
    put_all(&store, &names).await;
    let before = store.stats().snapshot();
    let options = ListOptions {
        parallelism: 1,
        page_size: 10,
        ..Default::default()
    };
    let listing = list(&store, "p/", &options).await.expect("list");
    assert_eq!(listing.objects.len(), 50);
    assert_eq!(listing.strategy, Strategy::Sequential);
    // 10 per page: the emulator would return all 50 at once if maxResults were not sent.
    let requests = store.stats().snapshot().since(&before).list;
    assert!((5..=6).contains(&requests), "{requests} list requests");
}

#[tokio::test]
async fn missing_bucket_fails_at_once_naming_it() {
    let Some(_) = emulator() else { return };
    let store: Arc<dyn Store> = Arc::new(
        dataflux::store::gcs::GcsStore::connect("no-such-bucket-here")
            .await
            .expect("connect"),
    );
    let err = list(&store, "", &ListOptions::default()).await.unwrap_err();
    assert!(
        matches!(&err, Error::BucketNotFound { bucket } if bucket == "no-such-bucket-here"),
        "{err}"
    );
    assert_eq!(
        store.stats().snapshot().retries,
        0,
        "permanent errors are not retried"
    );
}

#[tokio::test]
async fn parallel_listing_on_paged_memory_is_exact() {
    check_listing(paged_memory_store(), 8, false, 5).await;
    check_listing(paged_memory_store(), 3, true, 13).await;
}

#[tokio::test]
async fn listing_a_local_directory_is_exact() {
    let (store, _dir) = local_store().await;
    check_listing(store, 8, true, 1000).await;
}

#[tokio::test]
async fn empty_prefix_lists_nothing() {
    let store = paged_memory_store();
    let listing = list(&store, "nothing/", &ListOptions::default())
        .await
        .expect("list");
    assert!(listing.objects.is_empty());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_names_any_split_no_loss_no_duplicate(
            names in proptest::collection::btree_set("[a-c0-2._é-]{1,4}(/[a-c0-2_é]{1,3}){0,2}", 0..300),
            parallelism in 1usize..12,
            page in 1usize..40,
        ) {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let names: Vec<String> = names.into_iter().filter(|n| !n.starts_with('.')).collect();
            let store = paged_memory_store();
            rt.block_on(put_all(&store, &names));
            let options = ListOptions { parallelism, page_size: page, race_sequential: false, temp_prefix: String::new() };
            let listing = rt.block_on(list(&store, "", &options)).unwrap();
            let got: Vec<String> = listing.objects.into_iter().map(|o| o.name).collect();
            let mut expected = names.clone();
            expected.sort();
            prop_assert_eq!(got, expected);
        }
    }
}
