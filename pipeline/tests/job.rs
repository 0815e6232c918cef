//! The job's guarantees, with several ranks in one process (each a `Job::run_on` future with
//! its own topology) over the memory store: exact row sets after zombies, reshapes,
//! overlapping attempts, stragglers, kills, outages, panics and stop requests.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dataflux::{Location, Store};
use dataflux_distributed::Topology;
use dataflux_pipeline::{Error, Job, JobSpec, Outcome};
use tokio_util::sync::CancellationToken;

use common::run_rank as run;

/// One rank of one, reading images through `input` (a faulty store over `output`'s).
async fn run_reading(
    input: Arc<dyn Store>,
    output: &Arc<dyn Store>,
    spec: &JobSpec,
) -> dataflux_pipeline::Result<Outcome> {
    run_reading_with(input, output, spec, Checksum::fast()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_rank_writes_every_row_once_then_a_rerun_does_nothing() {
    let (store, good, bad) = inputs("one", 61).await;
    let spec = spec("one", "r1");
    let out = attempt(&store, &spec, Checksum::fast(), 1).await;
    let f = finished(&out[0]);
    assert!(f.has_bad_inputs());
    assert_eq!(
        f.rank.counts.chunks_committed, 8,
        "64 objects in chunks of 8"
    );
    assert_eq!(check_exactly_once(&store, "r1", &good, &bad).await, 1);
    let errors = store.get("out/errors_r1_shard_0.csv", None).await.unwrap();
    let text = String::from_utf8_lossy(&errors);
    assert!(
        text.contains("imgs/00059-x.jpg,panic,preprocessing panicked: decoder exploded"),
        "{text}"
    );
    assert!(text.contains("imgs/00003-x.jpg,decode,bad magic"), "{text}");

    // Resubmitted, finished: nothing happens.
    let again = run(&store, &spec, Checksum::fast(), 0, 1).await.unwrap();
    assert!(
        matches!(again, Outcome::AlreadyFinished { .. }),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_live_processes_of_one_rank_write_every_row_once() {
    let (store, good, bad) = inputs("zombie", 150).await;
    let spec = spec("zombie", "z");
    let model = Checksum::slow(Duration::from_millis(5));
    // The "zombie" starts a moment after the first, same rank, same world.
    let first = run(&store, &spec, model.clone(), 0, 1);
    let second = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        run(&store, &spec, model.clone(), 0, 1).await
    };
    let (a, b) = tokio::join!(first, second);
    let (a, b) = (a.unwrap(), b.unwrap());
    // Each ends Finished, or AlreadyFinished when the other wrote the summary first.
    for o in [&a, &b] {
        assert!(
            matches!(o, Outcome::Finished(_) | Outcome::AlreadyFinished { .. }),
            "{o:?}"
        );
    }
    check_exactly_once(&store, "z", &good, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_ranks_resubmitted_with_another_world_size_carry_on() {
    let (store, good, bad) = inputs("reshape", 200).await;
    let spec = spec("reshape", "rs");
    let model = Checksum::slow(Duration::from_millis(10));
    // Two ranks, killed (futures dropped: no release, no clean-up) after a few commits.
    let two = attempt(&store, &spec, model.clone(), 2);
    tokio::select! {
        _ = two => panic!("the first attempt should not finish"),
        _ = wait_for_commits(&store, "rs", 5) => {}
    }
    let before = commits(&store, "rs").await;
    assert!((5..26).contains(&before), "{before}");
    // Three ranks: they carry on from the commits (taking over the dead claims).
    let out = attempt(&store, &spec, model, 3).await;
    let redone: u64 = out
        .iter()
        .map(|o| finished(o).rank.counts.chunks_committed)
        .sum();
    assert_eq!(redone as usize + before, 26, "nothing committed is redone");
    assert_eq!(check_exactly_once(&store, "rs", &good, &bad).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_attempts_of_different_world_sizes_write_every_row_once() {
    let (store, good, bad) = inputs("overlap", 200).await;
    let spec = spec("overlap", "ov");
    let model = Checksum::slow(Duration::from_millis(5));
    let old = attempt(&store, &spec, model.clone(), 2);
    let new = async {
        wait_for_commits(&store, "ov", 3).await;
        attempt(&store, &spec, model.clone(), 3).await
    };
    let (old, new) = tokio::join!(old, new);
    for o in old.iter().chain(&new) {
        assert!(
            matches!(o, Outcome::Finished(_) | Outcome::AlreadyFinished { .. }),
            "{o:?}"
        );
    }
    let shards = check_exactly_once(&store, "ov", &good, &bad).await;
    assert!(shards == 2 || shards == 3, "{shards}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_straggler_does_not_hold_the_job() {
    let (store, good, bad) = inputs("straggler", 250).await;
    let spec = spec("straggler", "st");
    let fast = Checksum::slow(Duration::from_millis(4));
    let slow = Checksum::slow(Duration::from_millis(40));
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        run(&store, &spec, fast.clone(), 0, 3),
        run(&store, &spec, fast.clone(), 1, 3),
        run(&store, &spec, slow.clone(), 2, 3),
    );
    let took = started.elapsed();
    let done = |o: &Outcome| finished(o).rank.counts.chunks_committed;
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    // 32 chunks, 11 of them in the slow rank's own range: it does a few, the others take
    // the rest of its range from the end (and back up what it holds too long).
    assert!(
        done(&c) <= 4,
        "the slow rank committed {} chunks ({a:?} {b:?})",
        done(&c)
    );
    assert_eq!(done(&a) + done(&b) + done(&c), 32);
    check_exactly_once(&store, "st", &good, &bad).await;
    // For the record (not asserted: timing): the slow rank alone would take ~32 x 2 x 40 ms
    // for its own range.
    eprintln!("straggler job took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rank_killed_mid_chunk_is_taken_over_and_its_restart_finishes() {
    let (store, good, bad) = inputs("killed", 120).await;
    let spec = spec("killed", "k");
    let model = Checksum::slow(Duration::from_millis(20));
    // Rank 1 of 2 dies after the run's first few commits, holding a claim mid-chunk.
    let zero = run(&store, &spec, model.clone(), 0, 2);
    tokio::pin!(zero);
    let rank1 = run(&store, &spec, model.clone(), 1, 2);
    tokio::select! {
        _ = rank1 => panic!("rank 1 should not finish first"),
        _ = &mut zero => panic!("rank 0 should not finish first"),
        _ = wait_for_commits(&store, "k", 3) => {}
    }
    // Rank 0 finishes: it takes rank 1's range, and its lapsed claim, over; rank 1's
    // restart joins later.
    let restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        run(&store, &spec, model.clone(), 1, 2).await
    };
    let (zero, restart) = tokio::join!(zero, restart);
    assert!(matches!(zero.unwrap(), Outcome::Finished(_)));
    assert!(matches!(
        restart.unwrap(),
        Outcome::Finished(_) | Outcome::AlreadyFinished { .. }
    ));
    check_exactly_once(&store, "k", &good, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_of_gets_delays_the_job_without_error_rows() {
    let (memory, good, bad) = inputs("outage", 80).await;
    // Every GET of an image answers 503 for 3 s: each store retry gives up well before.
    let store = outage(memory.clone(), "imgs/", 3.0);
    let spec = spec("outage", "o");
    let out = run_reading(store, &memory, &spec).await.unwrap();
    let f = finished(&out);
    assert!(
        f.rank.counts.chunks_released >= 1,
        "chunks were given back: {:?}",
        f.rank.counts
    );
    check_exactly_once(&memory, "o", &good, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_past_the_deadline_is_a_retriable_error_and_a_rerun_finishes() {
    let (memory, good, bad) = inputs("deadline", 40).await;
    let store = outage(memory.clone(), "imgs/", 3600.0);
    let spec = spec("deadline", "d").with_store_deadline(Duration::from_millis(1500));
    let err = run_reading(store, &memory, &spec).await.unwrap_err();
    assert!(
        matches!(err, Error::StoreUnavailable { .. }) && err.is_retriable(),
        "{err}"
    );
    // Nothing was committed for the failed images; the rerun does them all.
    assert_eq!(commits(&memory, "d").await, 0);
    run(&memory, &spec, Checksum::fast(), 0, 1).await.unwrap();
    check_exactly_once(&memory, "d", &good, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_asking_for_two_batches_at_once_gets_them_and_every_row_once() {
    for concurrency in [1, 2] {
        let name = format!("overlap{concurrency}");
        let (store, good, bad) = inputs(&name, 61).await;
        let spec = spec(&name, "o").with_decode_threads(2);
        let model = Arc::new(Checksum {
            delay: Duration::from_millis(25),
            concurrency,
            ..Checksum::default()
        });
        let out = run(&store, &spec, model.clone(), 0, 1).await.unwrap();
        let f = finished(&out);
        check_exactly_once(&store, "o", &good, &bad).await;
        assert_eq!(
            model.max_inflight.load(std::sync::atomic::Ordering::SeqCst),
            concurrency,
            "batches in the model at once"
        );
        // Busy time is the union of the batches' spans: never more than the wall time.
        assert!(
            f.rank.stages.infer <= f.rank.wall_secs,
            "busy {} s over {} s",
            f.rank.stages.infer,
            f.rank.wall_secs
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_model_ends_the_job_with_the_stage_named() {
    let (store, _, _) = inputs("panic", 20).await;
    let spec = spec("panic", "p");
    let model = Arc::new(Checksum {
        panic_in_infer: true,
        concurrency: 2, // the other batch in the model finishes before the job ends
        ..Checksum::default()
    });
    let err = tokio::time::timeout(Duration::from_secs(30), run(&store, &spec, model, 0, 1))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        matches!(&err, Error::StagePanicked { stage: "infer", message } if message.contains("model exploded")),
        "{err}"
    );
    // Its claims were released (emptied), not left to lapse.
    let claims = dataflux::list(
        &store,
        "out/_dataflux/p/claims/",
        &dataflux::ListOptions::default().with_temp_prefix(String::new()),
    )
    .await
    .unwrap();
    assert!(
        claims.objects.iter().all(|o| o.size == 0),
        "{:?}",
        claims.objects
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_id_reused_for_another_input_is_refused() {
    let (store, _, _) = inputs("redefine", 20).await;
    inputs("redefine2", 5).await;
    let spec1 = spec("redefine", "same");
    attempt(&store, &spec1, Checksum::fast(), 1).await;
    let spec2 = spec1
        .clone()
        .with_input(Location::parse("memory://redefine/imgs-other").unwrap());
    let err = run(&store, &spec2, Checksum::fast(), 0, 1)
        .await
        .unwrap_err();
    assert!(err.is_config(), "{err}");
    match &err {
        Error::DefinitionChanged { run_id, changes } => {
            assert_eq!(run_id, "same");
            assert_eq!(changes.len(), 1, "{changes:?}");
            assert_eq!(changes[0].0, "input");
            assert!(
                err.to_string().contains("memory://redefine/imgs-other/"),
                "{err}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Another format under the same id too, even on a rank that is not the lister.
    let spec3 = spec1.with_format(dataflux_pipeline::OutputFormat::Jsonl);
    let err = run(&store, &spec3, Checksum::fast(), 1, 2)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DefinitionChanged { changes, .. } if changes[0].0 == "format"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_request_commits_or_releases_in_flight_chunks_and_a_rerun_finishes() {
    let (store, good, bad) = inputs("stop", 120).await;
    let spec = spec("stop", "s").with_grace(Duration::from_millis(200));
    let model = Checksum::slow(Duration::from_millis(30));
    let cancel = CancellationToken::new();
    let single = Topology::single();
    let job = Job::run_on(
        stores(&store),
        &spec,
        model.clone(),
        &single,
        cancel.clone(),
    );
    let stopper = async {
        wait_for_commits(&store, "s", 2).await;
        cancel.cancel();
        Instant::now()
    };
    let (out, asked) = tokio::join!(job, stopper);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stopped within the grace"
    );
    assert!(matches!(out.unwrap(), Outcome::Interrupted { .. }));
    // Whatever was not committed was released: its claim is empty.
    let claims = dataflux::list(
        &store,
        "out/_dataflux/s/claims/",
        &dataflux::ListOptions::default().with_temp_prefix(String::new()),
    )
    .await
    .unwrap();
    for claim in &claims.objects {
        let chunk = &claim.name["out/_dataflux/s/claims/".len()..][..8];
        let committed = store
            .head(&format!("out/_dataflux/s/commits/{chunk}"))
            .await
            .is_ok();
        assert!(
            claim.size == 0 || committed,
            "{claim:?}: neither released nor committed"
        );
    }
    let committed = commits(&store, "s").await;
    assert!(committed < 16, "{committed}");
    // The rerun starts at once (no lease to wait for) and finishes.
    let out = run(&store, &spec, Checksum::fast(), 0, 1).await.unwrap();
    assert_eq!(
        finished(&out).rank.counts.chunks_committed as usize,
        16 - committed
    );
    check_exactly_once(&store, "s", &good, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unwritable_output_and_bad_settings_are_config_errors() {
    let zero = spec("cfg", "c").with_chunk_size(0);
    let err = run(
        &Location::parse("memory://cfg")
            .unwrap()
            .open()
            .await
            .unwrap(),
        &zero,
        Checksum::fast(),
        0,
        1,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            dataflux_pipeline::Error::Config {
                setting: dataflux_pipeline::Setting::ChunkSize,
                ..
            }
        ) && err.to_string().starts_with("JobSpec::chunk_size: "),
        "{err}"
    );
    let dir = std::env::temp_dir().join(format!("dataflux-ro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let unwritable = spec("cfg", "c")
        .with_input(Location::parse(dir.to_str().unwrap()).unwrap())
        .with_output(Location::parse(file.join("out").to_str().unwrap()).unwrap());
    let err = Job::run(
        &unwritable,
        Checksum::fast(),
        &Topology::single(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        err.is_config() && err.to_string().starts_with("JobSpec::output "),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_cut_short_are_fetched_again_and_oversized_objects_are_error_rows() {
    let (memory, good, mut bad) = inputs("short", 30).await;
    let big = "imgs/99999-big.jpg".to_string();
    memory
        .put(
            &big,
            bytes::Bytes::from(vec![b'x'; 500]),
            dataflux::PutMode::Overwrite,
        )
        .await
        .unwrap();
    bad.insert(big.clone());
    let store = short_once(memory.clone(), "imgs/");
    let spec = spec("short", "sh").with_max_object_bytes(100);
    run_reading(store, &memory, &spec).await.unwrap();
    check_exactly_once(&memory, "sh", &good, &bad).await;
    let errors = memory.get("out/errors_sh_shard_0.csv", None).await.unwrap();
    let text = String::from_utf8_lossy(&errors);
    assert!(text.contains("imgs/99999-big.jpg,too_large,"), "{text}");
    assert!(!text.contains("integrity"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_lists_plans_and_counts_requests_writing_nothing() {
    let (store, _, _) = inputs("dry", 61).await;
    let spec = spec("dry", "dr");
    let plan = dataflux_pipeline::dry_run(&spec, 3).await.unwrap();
    assert_eq!((plan.objects, plan.chunks, plan.world_size), (64, 8, 3));
    assert_eq!(plan.ranges, [(0, 2), (2, 5), (5, 8)]);
    // The memory store cannot compose: one GET per image, plus the plan's and the chunks'.
    assert_eq!(plan.composed_groups, 0);
    assert_eq!(plan.requests.get, 64 + 1 + 8 + 8);
    assert!(plan.requests.cost_usd() > 0.0);
    assert!(plan.to_string().contains("nothing was written"));
    let written = dataflux::list(&store, "out/", &dataflux::ListOptions::default())
        .await
        .unwrap();
    assert!(written.objects.is_empty(), "{:?}", written.objects);
}

/// `image_id -> crc` of every Parquet shard of `run`, read back with the `parquet` crate;
/// a row found twice fails.
async fn parquet_rows(
    store: &Arc<dyn Store>,
    run: &str,
) -> std::collections::BTreeMap<String, String> {
    use arrow_array::{Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let summary: serde_json::Value = serde_json::from_slice(
        &store
            .get(&format!("out/_job_summary_{run}.json"), None)
            .await
            .expect("job summary"),
    )
    .unwrap();
    let mut rows = std::collections::BTreeMap::new();
    for s in 0..summary["shards"].as_u64().unwrap() {
        let bytes = store
            .get(&format!("out/results_{run}_shard_{s}.parquet"), None)
            .await
            .expect("results file");
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let col = |i: usize| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone()
            };
            let (ids, objects, crcs) = (col(0), col(1), col(2));
            for i in 0..batch.num_rows() {
                assert_eq!(objects.value(i), format!("imgs/{}.jpg", ids.value(i)));
                assert!(crcs.is_valid(i));
                let old = rows.insert(ids.value(i).to_string(), crcs.value(i).to_string());
                assert!(old.is_none(), "{} written twice", ids.value(i));
            }
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parquet_results_hold_every_image_once_with_a_zombie_and_a_reshape() {
    let (store, good, bad) = inputs("parquet", 100).await;
    let spec = spec("parquet", "pq").with_format(dataflux_pipeline::OutputFormat::Parquet);
    let model = Checksum::slow(Duration::from_millis(5));
    // Two ranks, rank 1 twice (a zombie), then the same run resubmitted at three ranks.
    let first = futures::future::join3(
        run(&store, &spec, model.clone(), 0, 2),
        run(&store, &spec, model.clone(), 1, 2),
        run(&store, &spec, model.clone(), 1, 2),
    );
    let (a, b, c) = first.await;
    for o in [a, b, c] {
        o.expect("rank finished");
    }
    attempt(&store, &spec, model, 3).await;
    assert_eq!(parquet_rows(&store, "pq").await, good);
    let mut named = String::new();
    for s in 0..3 {
        if let Ok(e) = store
            .get(&format!("out/errors_pq_shard_{s}.csv"), None)
            .await
        {
            named.push_str(&String::from_utf8_lossy(&e));
        }
    }
    for b in &bad {
        assert_eq!(named.matches(b.as_str()).count(), 1, "{b}");
    }
    assert!(leftovers(&store, "pq").await.is_empty());
}
