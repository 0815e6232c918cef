//! In-process tests on the memory store: each rank is a task. The same scenarios run across
//! processes, on the emulator and the local filesystem, in `tests/rendezvous_processes.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn fast() -> RendezvousOptions {
    RendezvousOptions {
        timeout: Duration::from_secs(10),
        poll_initial: Duration::from_millis(5),
        poll_max: Duration::from_millis(20),
    }
}

async fn rank(url: &str, run: &str, rank: usize, world: usize) -> Rendezvous {
    let topology = Topology::new(rank, world).unwrap();
    Rendezvous::open(url, run, &topology)
        .await
        .unwrap()
        .with_options(fast())
}

#[tokio::test]
async fn ranks_share_gather_and_clean_up() {
    let url = "memory://rdzv-unit/out";
    let world = 4;
    let produced = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for r in 0..world {
        let produced = produced.clone();
        tasks.push(tokio::spawn(async move {
            let rdzv = rank(url, "share", r, world).await;
            let listing = rdzv
                .share("listing", || async {
                    produced.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, Error>(Bytes::from_static(b"a\nb\nc\n"))
                })
                .await
                .unwrap();
            rdzv.barrier("listed").await.unwrap();
            let gathered = rdzv
                .all_gather("summary", format!("rank-{r}"))
                .await
                .unwrap();
            rdzv.finish().await.unwrap();
            (listing, gathered)
        }));
    }
    for task in tasks {
        let (listing, gathered) = task.await.unwrap();
        assert_eq!(listing, Bytes::from_static(b"a\nb\nc\n"));
        let expected: Vec<Bytes> = (0..world).map(|r| format!("rank-{r}").into()).collect();
        assert_eq!(gathered, expected);
    }
    assert_eq!(produced.load(Ordering::SeqCst), 1, "only rank 0 produces");
    let probe = rank(url, "share", 0, world).await;
    assert_eq!(
        probe.list_names(probe.root()).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn exactly_one_writer_wins_a_race() {
    let url = "memory://rdzv-unit/race";
    let world = 8;
    let mut tasks = Vec::new();
    for r in 0..world {
        tasks.push(tokio::spawn(async move {
            rank(url, "race", r, world)
                .await
                .set_if_absent("leader", format!("{r}"))
                .await
                .unwrap()
        }));
    }
    let mut winners = BTreeSet::new();
    for task in tasks {
        winners.insert(task.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
}

#[tokio::test]
async fn set_is_idempotent_but_refuses_a_different_value() {
    let rdzv = rank("memory://rdzv-unit/set", "set", 1, 2).await;
    rdzv.set("nccl-id", "abc").await.unwrap();
    rdzv.set("nccl-id", "abc").await.unwrap();
    let err = rdzv.set("nccl-id", "abcd").await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { key, rank: 1, existing: 3, attempted: 4 } if key == "nccl-id"),
        "{err}"
    );
    assert_eq!(
        rdzv.get("nccl-id").await.unwrap(),
        Some(Bytes::from_static(b"abc"))
    );
    assert_eq!(rdzv.get("other").await.unwrap(), None);
}

#[tokio::test]
async fn a_rank_that_never_arrives_is_named() {
    let url = "memory://rdzv-unit/absent";
    let options = RendezvousOptions {
        timeout: Duration::from_millis(200),
        ..fast()
    };
    let mut tasks = Vec::new();
    for r in [0, 1, 3] {
        tasks.push(tokio::spawn(async move {
            rank(url, "absent", r, 4)
                .await
                .with_options(options)
                .barrier("listed")
                .await
        }));
    }
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(
            matches!(&err, Error::RanksMissing { operation: "barrier", missing, world_size: 4, .. } if missing == &[2]),
            "{err}"
        );
        assert!(
            err.to_string().contains("ranks [2] of 4 never arrived"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn wait_timeout_names_the_key() {
    let rdzv = rank("memory://rdzv-unit/wait", "wait", 1, 2).await;
    let err = rdzv
        .wait_timeout("listing", Duration::from_millis(30))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::KeyTimeout { key, .. } if key == "listing"),
        "{err}"
    );
    assert!(err.to_string().contains("kv/listing"), "{err}");
}

#[tokio::test]
async fn a_restarted_rank_gets_the_same_answers() {
    let url = "memory://rdzv-unit/restart";
    let world = 2;
    let first = rank(url, "restart", 1, world).await;
    let gather = tokio::spawn(async move { first.all_gather("summary", "rank-1-attempt-0").await });
    // Rank 1 "crashes": its task is aborted after posting, before the gather completes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    gather.abort();

    let zero = tokio::spawn(async move {
        let rdzv = rank(url, "restart", 0, world).await;
        let listing = rdzv
            .share("listing", || async {
                Ok::<_, Error>(Bytes::from_static(b"L"))
            })
            .await
            .unwrap();
        (listing, rdzv.all_gather("summary", "rank-0").await.unwrap())
    });
    let restarted = rank(url, "restart", 1, world).await;
    restarted.barrier_free_share_check().await;
    let mine = restarted
        .all_gather("summary", "rank-1-attempt-1")
        .await
        .unwrap();
    let (listing, theirs) = zero.await.unwrap();
    assert_eq!(listing, Bytes::from_static(b"L"));
    assert_eq!(mine, theirs);
    assert_eq!(
        mine[1],
        Bytes::from_static(b"rank-1-attempt-0"),
        "first post wins"
    );
}

impl Rendezvous {
    /// A restarted non-zero rank waits for the shared value like any other.
    async fn barrier_free_share_check(&self) {
        let listing = self
            .share("listing", || async {
                Err::<Bytes, _>(std::io::Error::other("not rank 0"))
            })
            .await
            .unwrap();
        assert_eq!(listing, Bytes::from_static(b"L"));
    }
}

#[tokio::test]
async fn rank_zero_restarting_does_not_produce_again() {
    let url = "memory://rdzv-unit/zero";
    let first = rank(url, "zero", 0, 1).await;
    first
        .share("id", || async {
            Ok::<_, Error>(Bytes::from_static(b"one"))
        })
        .await
        .unwrap();
    let again = rank(url, "zero", 0, 1).await;
    let value = again
        .share("id", || async {
            Err::<Bytes, _>(std::io::Error::other("must not run"))
        })
        .await
        .unwrap();
    assert_eq!(value, Bytes::from_static(b"one"));
    let err = rank(url, "zero", 0, 1)
        .await
        .share("other", || async {
            Err::<Bytes, _>(std::io::Error::other("listing failed"))
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("\"other\"") && err.to_string().contains("listing failed"),
        "{err}"
    );
}

#[tokio::test]
async fn names_are_checked_and_not_reused() {
    let rdzv = rank("memory://rdzv-unit/names", "names", 0, 1).await;
    for bad in ["", "a/b", "../x", ".hidden", "sp ace"] {
        let err = rdzv.set(bad, "v").await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidName { name, .. } if name == bad),
            "{bad}: {err}"
        );
    }
    rdzv.barrier("once").await.unwrap();
    let err = rdzv.barrier("once").await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NameReused {
                operation: "barrier",
                ..
            }
        ),
        "{err}"
    );
    // A gather may share a barrier's name.
    rdzv.all_gather("once", "x").await.unwrap();
    let topology = Topology::single();
    assert!(matches!(
        Rendezvous::open("memory://x", "run/1", &topology)
            .await
            .unwrap_err(),
        Error::InvalidName { .. }
    ));
}

#[tokio::test]
async fn keys_live_under_the_temporary_prefix() {
    // At the bucket root, default listings skip them.
    let rdzv = rank("memory://rdzv-unit-root", "r1", 0, 1).await;
    assert_eq!(rdzv.root(), "dataflux-tmp/rendezvous/r1/");
    rdzv.set("k", "v").await.unwrap();
    let store = rdzv.store().clone();
    let listing = dataflux::list(&store, "", &dataflux::ListOptions::default())
        .await
        .unwrap();
    assert!(listing.objects.is_empty(), "{:?}", listing.objects);
    assert_eq!(listing.skipped.temporary, 1);
    assert_eq!(rdzv.cleanup().await.unwrap(), 1);

    // Under a prefix, they sit in that prefix's temporary folder.
    let rdzv = rank("memory://rdzv-unit/images/", "r1", 0, 1).await;
    assert_eq!(rdzv.root(), "images/dataflux-tmp/rendezvous/r1/");
    rdzv.set("k", "v").await.unwrap();
    let options = dataflux::ListOptions::default().with_temp_prefix("images/dataflux-tmp/");
    let listing = dataflux::list(rdzv.store(), "images/", &options)
        .await
        .unwrap();
    assert!(listing.objects.is_empty(), "{:?}", listing.objects);
    assert_eq!(rdzv.cleanup().await.unwrap(), 1);
}

#[test]
fn run_id_comes_from_dataflux_then_torchrun() {
    let get = |pairs: &'static [(&'static str, &'static str)]| {
        run_id_from_vars(move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    };
    assert_eq!(
        get(&[("DATAFLUX_RUN_ID", "a"), ("TORCHELASTIC_RUN_ID", "b")]).unwrap(),
        "a"
    );
    assert_eq!(get(&[("TORCHELASTIC_RUN_ID", "b")]).unwrap(), "b");
    assert!(matches!(
        get(&[("TORCHELASTIC_RUN_ID", "none")]),
        Err(Error::MissingRunId)
    ));
    assert!(matches!(get(&[]), Err(Error::MissingRunId)));
    assert!(matches!(
        get(&[("DATAFLUX_RUN_ID", "a b")]),
        Err(Error::InvalidName { .. })
    ));
}
