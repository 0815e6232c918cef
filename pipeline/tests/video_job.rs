//! Videos through the job, under the same guarantees as images (../shared/JOB-INVARIANTS.md):
//! exact row sets — one row per sample, `(image_id, frame)` once each — after zombies, kills
//! mid-video, reshapes, outages and cut bodies; broken videos as error rows; a video far
//! larger than the prefetch window read in bounded ranges; chunks closed by bytes; leases
//! renewed while a long video decodes.
#![cfg(feature = "video")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{
    attempt, commits, finished, leftovers, outage, run_rank, run_reading_with, short_once, stores,
    wait_for_commits,
};
use dataflux::store::hooked::{Answer, Call, HookStore};
use dataflux::{Location, PutMode, Store};
use dataflux_distributed::Topology;
use dataflux_inference::video::{decode_video, Sampling, VideoOptions};
use dataflux_pipeline::{
    BatchModel, Column, ColumnKind, Job, JobSpec, ModelError, Outcome, Rejection, Row, Value,
};
use tokio_util::sync::CancellationToken;

/// Rows are the CRC32C of an image's bytes, or of a video sample's RGB pixels; `delay` is
/// spent per batch; samples `panic_width` wide panic in preprocessing.
#[derive(Default)]
struct Pixels {
    delay: Duration,
    panic_width: Option<u32>,
}

impl Pixels {
    fn slow(delay: Duration) -> Self {
        Pixels {
            delay,
            ..Pixels::default()
        }
    }
}

impl BatchModel for Pixels {
    type Input = u32;
    fn task(&self) -> &str {
        "pixels"
    }
    fn definition(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::new("crc", ColumnKind::Text)]
    }
    fn preprocess(&self, bytes: &[u8]) -> Result<u32, Rejection> {
        if bytes.starts_with(b"BAD") {
            return Err(Rejection::new("decode", "bad magic"));
        }
        Ok(crc32c::crc32c(bytes))
    }
    fn preprocess_rgb(&self, image: &dataflux_inference::RgbImage) -> Result<u32, Rejection> {
        if self.panic_width == Some(image.width()) {
            panic!("no HEVC here");
        }
        Ok(crc32c::crc32c(image.as_raw()))
    }
    fn infer(&self, batch: Vec<u32>) -> Result<Vec<Row>, ModelError> {
        std::thread::sleep(self.delay);
        Ok(batch
            .into_iter()
            .map(|c| vec![Value::Text(format!("{c:08x}"))])
            .collect())
    }
}

/// `(image_id, frame) -> crc`.
type Rows = BTreeMap<(String, u64), String>;

const FPS: f64 = 1.0;

fn fixture(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inference/fixtures/video");
    std::fs::read(dir.join(name)).unwrap()
}

/// The samples of `bytes` at [`FPS`], decoded here: `(k, crc of the pixels)`.
fn samples(bytes: Vec<u8>) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let _ = decode_video(
        std::io::Cursor::new(bytes),
        None,
        &VideoOptions::new(Sampling::fps(FPS)).with_threads(1),
        |f| {
            out.push((f.k, format!("{:08x}", crc32c::crc32c(f.image.as_raw()))));
            ControlFlow::Continue(())
        },
    );
    out
}

/// A raw YUV 4:2:0 video (Y4M) of `frames` frames at 10 fps, every frame different: a video
/// of any size without an encoder.
fn y4m(width: usize, height: usize, frames: usize) -> Vec<u8> {
    let mut out = format!("YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    let (luma, chroma) = (width * height, (width / 2) * (height / 2));
    for f in 0..frames {
        out.extend_from_slice(b"FRAME\n");
        out.extend((0..luma).map(|i| ((i + f * 7) % 251) as u8));
        out.extend(std::iter::repeat_n((f * 3 % 256) as u8, chroma));
        out.extend(std::iter::repeat_n((255 - f % 256) as u8, chroma));
    }
    out
}

/// A memory store holding images (good and bad) and videos (good and broken) under `imgs/`;
/// returns it with the expected rows and the objects that must have an error row.
async fn inputs(
    name: &str,
    images: usize,
    big: Option<Vec<u8>>,
) -> (Arc<dyn Store>, Rows, BTreeSet<String>) {
    let store = Location::parse(&format!("memory://{name}"))
        .unwrap()
        .open()
        .await
        .unwrap();
    let mut rows = Rows::new();
    let mut bad = BTreeSet::new();
    for i in 0..images {
        let body = format!("image {i} of {name}");
        store
            .put(
                &format!("imgs/{i:04}.jpg"),
                Bytes::from(body.clone()),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
        rows.insert(
            (format!("{i:04}"), 0),
            format!("{:08x}", crc32c::crc32c(body.as_bytes())),
        );
    }
    store
        .put(
            "imgs/0002-x.jpg",
            Bytes::from_static(b"BAD"),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    bad.insert("imgs/0002-x.jpg".to_string());
    let mut videos: Vec<(String, Vec<u8>)> = [
        "h264.mp4",
        "hevc.mkv",
        "vp9.webm",
        "mpeg4.avi",
        "full709.mov",
        "long.mp4",
        "av1.mkv",
    ]
    .iter()
    .map(|v| (v.to_string(), fixture(v)))
    .collect();
    // Recognised by content, whatever the name.
    videos.push(("clip_without_extension".into(), fixture("h264.mp4")));
    if let Some(big) = big {
        videos.push(("big.y4m".into(), big));
    }
    for (video, bytes) in videos {
        let stem = video.split('.').next().unwrap().to_string();
        for (k, crc) in samples(bytes.clone()) {
            rows.insert((stem.clone(), k), crc);
        }
        store
            .put(
                &format!("imgs/{video}"),
                Bytes::from(bytes),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
    }
    // Broken: cut short (its first samples are rows), no video stream, not a video at all.
    for (video, rows_before_cut) in [("cut.mp4", 2), ("audio.m4a", 0), ("garbage.mp4", 0)] {
        let bytes = fixture(video);
        let got = samples(bytes.clone());
        assert_eq!(got.len(), rows_before_cut, "{video}");
        let stem = video.split('.').next().unwrap().to_string();
        for (k, crc) in got {
            rows.insert((stem.clone(), k), crc);
        }
        store
            .put(
                &format!("imgs/{video}"),
                Bytes::from(bytes),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
        bad.insert(format!("imgs/{video}"));
    }
    (store, rows, bad)
}

fn spec(name: &str, run: &str) -> JobSpec {
    JobSpec::default()
        .with_input(Location::parse(&format!("memory://{name}/imgs")).unwrap())
        .with_output(Location::parse(&format!("memory://{name}/out")).unwrap())
        .with_run_id(Some(run.into()))
        .with_chunk_size(4)
        .with_batch_size(4)
        .with_lease(Duration::from_millis(800))
        .with_poll(Duration::from_millis(50))
        .with_grace(Duration::from_secs(5))
        .with_store_deadline(Duration::from_secs(60))
        .with_wait_timeout(Duration::from_secs(60))
        .with_decode_threads(2)
        .with_video(Some(Sampling::fps(FPS)))
}

/// Rank `rank` of `world`, which must end without error.
async fn run(
    store: &Arc<dyn Store>,
    spec: &JobSpec,
    model: Arc<impl BatchModel>,
    rank: usize,
    world: usize,
) -> Outcome {
    run_rank(store, spec, model, rank, world)
        .await
        .expect("rank finished")
}

/// One rank of one reading through `input`, which must end without error.
async fn run_reading<M: BatchModel>(
    input: Arc<dyn Store>,
    output: &Arc<dyn Store>,
    spec: &JobSpec,
    model: Arc<M>,
) -> Outcome {
    run_reading_with(input, output, spec, model)
        .await
        .expect("rank finished")
}

/// Every `(image_id, frame)` exactly once with its value and `time_s = frame / F`, every bad
/// object exactly one error row, the summary's counts, nothing left behind.
async fn check(store: &Arc<dyn Store>, run: &str, want: &Rows, bad: &BTreeSet<String>) {
    let summary: serde_json::Value = serde_json::from_slice(
        &store
            .get(&format!("out/_job_summary_{run}.json"), None)
            .await
            .unwrap(),
    )
    .unwrap();
    let shards = summary["shards"].as_u64().unwrap();
    let mut rows: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
    let mut errors = Vec::new();
    for s in 0..shards {
        let results = store
            .get(&format!("out/results_{run}_shard_{s}.csv"), None)
            .await
            .unwrap();
        let mut reader = csv::Reader::from_reader(&results[..]);
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            ["image_id", "frame", "time_s", "crc"]
        );
        for r in reader.records() {
            let r = r.unwrap();
            let frame: u64 = r[1].parse().unwrap();
            assert_eq!(
                &r[2],
                format!("{:.3}", frame as f64 / FPS),
                "time_s of {r:?}"
            );
            rows.entry((r[0].to_string(), frame))
                .or_default()
                .push(r[3].to_string());
        }
        let errs = store
            .get(&format!("out/errors_{run}_shard_{s}.csv"), None)
            .await
            .unwrap();
        for r in csv::Reader::from_reader(&errs[..]).records() {
            errors.push(r.unwrap()[0].to_string());
        }
    }
    let want_rows: BTreeMap<(String, u64), Vec<String>> = want
        .iter()
        .map(|(k, v)| (k.clone(), vec![v.clone()]))
        .collect();
    assert_eq!(rows.len(), want_rows.len());
    assert_eq!(rows, want_rows, "every sample exactly once, with its value");
    let errors_set: BTreeSet<String> = errors.iter().cloned().collect();
    assert_eq!(
        errors.len(),
        errors_set.len(),
        "no doubled error rows: {errors:?}"
    );
    assert_eq!(&errors_set, bad);
    assert_eq!(summary["images_ok"].as_u64(), Some(want.len() as u64));
    let left = leftovers(store, run).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn videos_and_images_give_one_row_per_sample_and_broken_videos_error_rows() {
    let (store, want, bad) = inputs("v-one", 9, None).await;
    // 60 s at 1/s, 4 s, the cut one's 2 before the break, …
    assert_eq!(want.keys().filter(|(id, _)| id == "long").count(), 60);
    assert_eq!(
        want.keys()
            .filter(|(id, _)| id == "clip_without_extension")
            .count(),
        4
    );
    let spec = spec("v-one", "v1");
    let out = attempt(&store, &spec, Arc::new(Pixels::default()), 1).await;
    assert!(finished(&out[0]).has_bad_inputs());
    check(&store, "v1", &want, &bad).await;
    let errors = store.get("out/errors_v1_shard_0.csv", None).await.unwrap();
    let text = String::from_utf8_lossy(&errors);
    assert!(
        text.contains("imgs/cut.mp4,decode,video cut short at 1."),
        "{text}"
    );
    assert!(text.contains("imgs/audio.m4a,no_video_stream,"), "{text}");
    assert!(
        text.contains("imgs/garbage.mp4,decode,cannot open video"),
        "{text}"
    );
    // Resubmitted, finished: nothing happens.
    let again = run(&store, &spec, Arc::new(Pixels::default()), 0, 1).await;
    assert!(
        matches!(again, Outcome::AlreadyFinished { .. }),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zombie_and_a_reshape_with_videos_write_every_sample_once() {
    let (store, want, bad) = inputs("v-zombie", 20, None).await;
    let spec = spec("v-zombie", "vz");
    let model = Arc::new(Pixels::slow(Duration::from_millis(5)));
    // Two ranks, then a second process of rank 0 (a zombie) and a three-rank attempt over it.
    let two = attempt(&store, &spec, model.clone(), 2);
    tokio::select! {
        _ = two => panic!("the first attempt should not finish"),
        _ = wait_for_commits(&store, "vz", 2) => {}
    }
    let zombie = run(&store, &spec, model.clone(), 0, 2);
    let three = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        attempt(&store, &spec, model.clone(), 3).await
    };
    let (z, three) = tokio::join!(zombie, three);
    for o in std::iter::once(&z).chain(&three) {
        assert!(
            matches!(o, Outcome::Finished(_) | Outcome::AlreadyFinished { .. }),
            "{o:?}"
        );
    }
    check(&store, "vz", &want, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rank_killed_mid_video_is_taken_over_and_nothing_committed_is_redone() {
    let (store, want, bad) = inputs("v-kill", 4, None).await;
    // Slow batches: the long video's 60 samples take ~1.5 s; the kill lands inside it.
    let spec = spec("v-kill", "vk").with_chunk_size(2);
    let model = Arc::new(Pixels::slow(Duration::from_millis(100)));
    let zero = run(&store, &spec, model.clone(), 0, 1);
    tokio::select! {
        _ = zero => panic!("should not finish before the kill"),
        _ = wait_for_commits(&store, "vk", 6) => {}
    }
    // Dropped: no release, no clean-up, its claim lapses. Two ranks carry on.
    let before = commits(&store, "vk").await;
    let fast = Arc::new(Pixels::default());
    let out = attempt(&store, &spec, fast, 2).await;
    let index: serde_json::Value = serde_json::from_slice(
        &store
            .get("out/_dataflux/vk/index.json", None)
            .await
            .unwrap(),
    )
    .unwrap();
    let chunks = (index["count"].as_u64().unwrap() as usize).div_ceil(2);
    let redone: u64 = out
        .iter()
        .map(|o| finished(o).rank.counts.chunks_committed)
        .sum();
    assert_eq!(
        redone as usize + before,
        chunks,
        "nothing committed is redone"
    );
    check(&store, "vk", &want, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outages_and_cut_bodies_on_video_reads_redo_chunks_without_error_rows() {
    // The big video is read by ranges (larger than the window): its reads fail too.
    let big = y4m(320, 240, 40);
    let (memory, want, bad) = inputs("v-faults", 6, Some(big)).await;
    let spec = spec("v-faults", "vf").with_prefetch_bytes(512 * 1024);
    let flaky = short_once(outage(memory.clone(), "imgs/", 2.0), "imgs/");
    let out = run_reading(flaky, &memory, &spec, Arc::new(Pixels::default())).await;
    assert!(
        finished(&out).rank.counts.chunks_released >= 1,
        "{:?}",
        finished(&out).rank.counts
    );
    check(&memory, "vf", &want, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_video_far_larger_than_the_window_is_read_in_bounded_ranges() {
    // 120 frames of 640x480: 55 MB, against a 1 MiB prefetch window.
    let big = y4m(640, 480, 120);
    let size = big.len() as u64;
    let (memory, want, bad) = inputs("v-big", 2, Some(big)).await;
    assert_eq!(want.keys().filter(|(id, _)| id == "big").count(), 12);
    let gets = Arc::new(AtomicU64::new(0));
    let g = gets.clone();
    // Every GET of the big video, counted.
    let counting: Arc<dyn Store> = Arc::new(HookStore::new(memory.clone(), move |call| {
        if let Call::Get(name) = call {
            if name.ends_with("big.y4m") {
                g.fetch_add(1, Ordering::SeqCst);
            }
        }
        Answer::Forward
    }));
    let spec = spec("v-big", "vb").with_prefetch_bytes(1 << 20);
    let out = run_reading(counting, &memory, &spec, Arc::new(Pixels::default())).await;
    check(&memory, "vb", &want, &bad).await;
    // Read in blocks (never whole, never twice over): one ranged GET per block, and the job's
    // input bytes about the video's size.
    let block = dataflux_pipeline::video::READ_BLOCK_BYTES;
    let gets = gets.load(Ordering::SeqCst);
    assert!(
        gets >= size.div_ceil(block) && gets <= size.div_ceil(block) + 4,
        "{gets} GETs of {size} bytes"
    );
    let read = finished(&out).rank.requests.bytes_read;
    assert!(
        read >= size && read < size + size / 8,
        "read {read} for a video of {size}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunks_closed_by_bytes_and_leases_renewed_while_a_long_video_decodes() {
    let (store, want, bad) = inputs("v-bytes", 6, None).await;
    // No chunk holds more than 20 KB: long.mp4 (58 KB) is a chunk of its own.
    let spec = spec("v-bytes", "vc")
        .with_chunk_bytes(Some(20_000))
        .with_chunk_size(100)
        .with_speculate(false);
    // Slow batches: long.mp4's chunk takes 15 batches x 200 ms = 3 s, several leases of 0.8 s.
    let model = Arc::new(Pixels::slow(Duration::from_millis(200)));
    let out = attempt(&store, &spec, model, 2).await;
    let index: serde_json::Value = serde_json::from_slice(
        &store
            .get("out/_dataflux/vc/index.json", None)
            .await
            .unwrap(),
    )
    .unwrap();
    let starts = index["starts"]
        .as_array()
        .expect("chunk starts saved")
        .len();
    assert!(starts > 3, "{index}");
    let committed: u64 = out
        .iter()
        .map(|o| finished(o).rank.counts.chunks_committed)
        .sum();
    let discarded: u64 = out
        .iter()
        .map(|o| finished(o).rank.counts.chunks_discarded)
        .sum();
    assert_eq!(
        (committed, discarded),
        (starts as u64, 0),
        "no claim lapsed and was taken over"
    );
    check(&store, "vc", &want, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_request_mid_video_ends_within_the_grace_and_a_rerun_finishes() {
    let (store, want, bad) = inputs("v-stop", 4, None).await;
    let spec = spec("v-stop", "vs")
        .with_chunk_size(2)
        .with_grace(Duration::from_millis(200));
    // Slow batches: long.mp4's chunk takes seconds; the stop comes inside it.
    let model = Arc::new(Pixels::slow(Duration::from_millis(100)));
    let cancel = CancellationToken::new();
    let single = Topology::single();
    let job = Job::run_on(stores(&store), &spec, model, &single, cancel.clone());
    let stopper = async {
        wait_for_commits(&store, "vs", 6).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
        std::time::Instant::now()
    };
    let (out, asked) = tokio::join!(job, stopper);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stopped within the grace, mid-video: {:?}",
        asked.elapsed()
    );
    assert!(matches!(out.unwrap(), Outcome::Interrupted { .. }));
    let out = run(&store, &spec, Arc::new(Pixels::default()), 0, 1).await;
    assert!(matches!(out, Outcome::Finished(_)), "{out:?}");
    check(&store, "vs", &want, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rank_far_slower_on_videos_does_not_hold_the_job() {
    let (store, want, bad) = inputs("v-slow", 12, None).await;
    let spec = spec("v-slow", "vl").with_chunk_size(2);
    let fast = Arc::new(Pixels::slow(Duration::from_millis(2)));
    let slow = Arc::new(Pixels::slow(Duration::from_millis(200)));
    let (a, b) = tokio::join!(
        run(&store, &spec, fast, 0, 2),
        run(&store, &spec, slow, 1, 2)
    );
    let (a, b) = (finished(&a), finished(&b));
    assert!(
        b.rank.counts.chunks_committed < a.rank.counts.chunks_committed,
        "the fast rank did most: {:?} {:?}",
        a.rank.counts,
        b.rank.counts
    );
    check(&store, "vl", &want, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_preprocessing_a_video_is_its_error_row_and_the_job_goes_on() {
    let (store, mut want, mut bad) = inputs("v-panic", 3, None).await;
    // hevc.mkv (80x60) panics at its first sample: no rows of it, one error row.
    want.retain(|(id, _), _| id != "hevc");
    bad.insert("imgs/hevc.mkv".into());
    let spec = spec("v-panic", "vp");
    run_reading(
        store.clone(),
        &store,
        &spec,
        Arc::new(Pixels {
            panic_width: Some(80),
            ..Pixels::default()
        }),
    )
    .await;
    check(&store, "vp", &want, &bad).await;
    let errors = store.get("out/errors_vp_shard_0.csv", None).await.unwrap();
    let text = String::from_utf8_lossy(&errors);
    assert!(
        text.contains("imgs/hevc.mkv,panic,decoding panicked: no HEVC here"),
        "{text}"
    );
}
