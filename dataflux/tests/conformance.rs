//! The `Store` contract, as object_store's own conformance tests check theirs: one suite run
//! against every store (memory, local directory, GCS on the emulator, S3 on moto) and every
//! wrapper that is itself a store (retrying, counting, hooked), bare and stacked. A store or
//! wrapper that breaks the contract anywhere fails here by name.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use dataflux::store::counting::CountingStore;
use dataflux::store::hooked::{Answer, HookStore};
use dataflux::store::retrying::RetryStore;
use dataflux::store::PageRequest;
use dataflux::{Error, Location, PutMode, RetryPolicy, Store};

/// Every name under `prefix`, page by page with `page` objects a page, `(after, upto]`.
async fn names(
    store: &Arc<dyn Store>,
    prefix: &str,
    after: Option<&str>,
    upto: Option<&str>,
    page: usize,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    let mut last: Option<String> = after.map(str::to_string);
    for _ in 0..1000 {
        let p = store
            .list_page(PageRequest {
                token: token.as_deref(),
                ..PageRequest::new(prefix, last.as_deref(), upto, page)
            })
            .await
            .unwrap_or_else(|e| panic!("{}: list {prefix:?}: {e}", store.url()));
        // A remote store pages; a local one (memory, a directory) may answer the whole range
        // at once, since each call walks it whole anyway — then saying there is no more.
        assert!(
            p.objects.len() <= page || (!store.capabilities().remote && !p.more),
            "{}: a page of {} holds {} objects",
            store.url(),
            page,
            p.objects.len()
        );
        out.extend(p.objects.iter().map(|o| o.name.clone()));
        match (&p.token, p.more, p.objects.last()) {
            (Some(t), true, None) => token = Some(t.clone()),
            (_, true, Some(o)) => {
                token = None;
                last = Some(o.name.clone());
            }
            _ => return out,
        }
    }
    panic!("{}: the listing never ended", store.url())
}

/// The contract, on an empty store.
async fn conformance(store: Arc<dyn Store>) {
    let url = store.url().to_string();
    // put / head / get, whole and ranged.
    let body = Bytes::from_static(b"0123456789abcdef");
    let meta = store
        .put("c/a.bin", body.clone(), PutMode::Overwrite)
        .await
        .unwrap_or_else(|e| panic!("{url}: put: {e}"));
    assert_eq!(meta.name, "c/a.bin", "{url}");
    assert_eq!(meta.size, 16, "{url}");
    let head = store.head("c/a.bin").await.expect("head");
    assert_eq!((head.name.as_str(), head.size), ("c/a.bin", 16), "{url}");
    assert_eq!(
        store.get("c/a.bin", None).await.expect("get"),
        body,
        "{url}"
    );
    assert_eq!(
        store.get("c/a.bin", Some(3..7)).await.expect("ranged get"),
        Bytes::from_static(b"3456"),
        "{url}"
    );
    assert_eq!(
        store.get("c/a.bin", Some(10..16)).await.expect("tail get"),
        Bytes::from_static(b"abcdef"),
        "{url}"
    );
    // An empty object is an object.
    store
        .put("c/empty", Bytes::new(), PutMode::Overwrite)
        .await
        .expect("put empty");
    assert_eq!(
        store.head("c/empty").await.expect("head empty").size,
        0,
        "{url}"
    );
    assert!(store
        .get("c/empty", None)
        .await
        .expect("get empty")
        .is_empty());

    // Missing objects: typed "not found", never another error.
    for err in [
        store.get("c/missing", None).await.err(),
        store.head("c/missing").await.err(),
    ] {
        let err = err.unwrap_or_else(|| panic!("{url}: a missing object was found"));
        assert!(err.is_not_found(), "{url}: {err}");
        assert!(!err.is_temporary(), "{url}: not found is permanent: {err}");
    }

    // Create-only writes: the first wins, the second is AlreadyExists and changes nothing.
    store
        .put("c/once", Bytes::from_static(b"first"), PutMode::Create)
        .await
        .expect("create");
    let second = store
        .put("c/once", Bytes::from_static(b"second"), PutMode::Create)
        .await
        .expect_err("a second create must fail");
    assert!(
        matches!(second, Error::AlreadyExists { .. }),
        "{url}: {second}"
    );
    assert_eq!(
        store.get("c/once", None).await.expect("get"),
        Bytes::from_static(b"first"),
        "{url}"
    );
    // Overwrite replaces.
    store
        .put("c/once", Bytes::from_static(b"third"), PutMode::Overwrite)
        .await
        .expect("overwrite");
    assert_eq!(
        store.get("c/once", None).await.expect("get"),
        Bytes::from_static(b"third"),
        "{url}"
    );

    // Delete: gone afterwards; deleting what is missing is not an error.
    store.delete("c/once").await.expect("delete");
    assert!(store
        .head("c/once")
        .await
        .expect_err("deleted")
        .is_not_found());
    store
        .delete("c/once")
        .await
        .expect("deleting a missing object");

    // Listing: sorted, exact, prefix-bounded, `(after, upto]`, whatever the page size.
    let mut expected: Vec<String> = (0..23).map(|i| format!("l/{i:03}.jpg")).collect();
    expected.push("l/sub/x.jpg".into());
    for name in &expected {
        store
            .put(name, Bytes::from_static(b"x"), PutMode::Overwrite)
            .await
            .expect("put");
    }
    store
        .put(
            "l0/outside.jpg",
            Bytes::from_static(b"x"),
            PutMode::Overwrite,
        )
        .await
        .expect("put");
    for page in [1, 5, 1000] {
        assert_eq!(
            names(&store, "l/", None, None, page).await,
            expected,
            "{url}: page {page}"
        );
    }
    assert_eq!(
        names(&store, "l/", Some("l/004.jpg"), Some("l/009.jpg"), 2).await,
        expected[5..10],
        "{url}: (after, upto]"
    );
    assert!(
        names(&store, "none/", None, None, 10).await.is_empty(),
        "{url}"
    );

    // Folders under a prefix, where the store lists them.
    match store.list_folders("l/", None).await {
        Ok(page) => assert_eq!(page.folders, ["l/sub/"], "{url}"),
        Err(Error::Unsupported { .. }) => {}
        Err(e) => panic!("{url}: list_folders: {e}"),
    }
}

/// A store behind every wrapper, one at a time and stacked.
fn wrapped(base: Arc<dyn Store>) -> Vec<Arc<dyn Store>> {
    vec![
        Arc::new(CountingStore::new(base.clone())),
        Arc::new(RetryStore::new(base.clone(), RetryPolicy::default())),
        Arc::new(HookStore::new(base.clone(), |_| Answer::Forward)),
        dataflux::store::retrying::layered(
            Arc::new(HookStore::new(base, |_| Answer::Forward)),
            RetryPolicy::default(),
        ),
    ]
}

#[tokio::test]
async fn memory_store_and_its_wrappers_conform() {
    let open = |n: &str| {
        let n = format!("memory://conformance-{n}-{}", std::process::id());
        async move {
            Location::parse(&n)
                .expect("parse")
                .open()
                .await
                .expect("open")
        }
    };
    conformance(open("bare").await).await;
    conformance(paged_memory_store()).await;
    // Each wrapper over a store of its own (the suite expects an empty one).
    for i in 0..4 {
        let base = open(&format!("w{i}")).await;
        conformance(wrapped(base).swap_remove(i)).await;
    }
}

#[tokio::test]
async fn local_store_and_its_wrappers_conform() {
    let (store, _dir) = local_store().await;
    conformance(store).await;
    for i in 0..4 {
        let (base, _dir) = local_store().await;
        conformance(wrapped(base).swap_remove(i)).await;
    }
}

#[tokio::test]
async fn gcs_on_the_emulator_and_its_wrappers_conform() {
    let Some(store) = gcs_store("conformance").await else {
        return;
    };
    conformance(store).await;
    for i in 0..4 {
        let Some(base) = gcs_store(&format!("conformance-w{i}")).await else {
            return;
        };
        conformance(wrapped(base).swap_remove(i)).await;
    }
}

#[tokio::test]
async fn s3_on_moto_and_its_wrappers_conform() {
    let Some(store) = s3_store("conformance").await else {
        eprintln!("AWS_ENDPOINT not set: S3 conformance skipped");
        return;
    };
    conformance(store).await;
    for i in 0..4 {
        let Some(base) = s3_store(&format!("conformance-w{i}")).await else {
            return;
        };
        conformance(wrapped(base).swap_remove(i)).await;
    }
}
