//! The `dataflux` command-line tool, run as a user runs it: on a local directory and on the
//! GCS emulator (`STORAGE_EMULATOR_HOST`; set `DATAFLUX_SKIP_EMULATOR=1` to skip those).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use bytes::Bytes;
use dataflux::store::gcs::{emulator_endpoint, GcsStore};
use dataflux::{list, ListOptions, PutMode, Store};
use futures::StreamExt;

fn dataflux(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dataflux"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run dataflux")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(root: &Path, name: &str, body: &[u8]) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, body).expect("write");
}

/// A new, empty bucket on the emulator, or `None` when emulator tests are skipped.
async fn emulator_bucket(tag: &str) -> Option<(String, Arc<dyn Store>)> {
    let Some(endpoint) = emulator_endpoint() else {
        if std::env::var("DATAFLUX_SKIP_EMULATOR").is_ok_and(|v| v == "1") {
            eprintln!("skipping: STORAGE_EMULATOR_HOST is not set and DATAFLUX_SKIP_EMULATOR=1");
            return None;
        }
        panic!(
            "STORAGE_EMULATOR_HOST is not set: start fake-gcs-server, e.g.\n  fake-gcs-server -scheme http -host 127.0.0.1 -port 4443 -backend memory -external-url http://127.0.0.1:4443\nand export STORAGE_EMULATOR_HOST=http://127.0.0.1:4443 (or DATAFLUX_SKIP_EMULATOR=1 to skip)"
        );
    };
    let bucket = format!(
        "df-cli-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b"))
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot reach the emulator at {endpoint}: {e}"));
    assert!(
        resp.status().is_success(),
        "creating bucket: {}",
        resp.status()
    );
    let store: Arc<dyn Store> = dataflux::store::retrying::layered(
        Arc::new(GcsStore::connect(&bucket).await.expect("connect")),
        dataflux::RetryPolicy::default(),
    );
    Some((bucket, store))
}

async fn temporaries(store: &Arc<dyn Store>) -> usize {
    let options = ListOptions::default().with_temp_prefix(String::new());
    list(store, "dataflux-tmp/", &options)
        .await
        .expect("list temporaries")
        .objects
        .len()
}

#[test]
fn list_prints_names_and_sizes_of_a_local_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "b.jpg", b"12345");
    write(root, "a.jpg", b"");
    write(root, "sub/x y.png", b"xyz");
    write(root, "sub/é~%.txt", b"1");
    write(root, "dataflux-tmp/run/1000-0-abc", b"temporary");
    let url = root.to_str().expect("utf-8");
    let out = dataflux(&["list", url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "a.jpg\t0\nb.jpg\t5\nsub/x y.png\t3\nsub/é~%.txt\t1\n"
    );
    assert!(
        out.stderr.is_empty(),
        "no logs by default: {}",
        stderr(&out)
    );

    let out = dataflux(&["list", &format!("file://{url}"), "--count", "--stats"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "4\n");
    let err = stderr(&out);
    assert!(err.contains("listed 4 objects in"), "{err}");
    assert!(err.contains("strategy Sequential"), "{err}");
    assert!(err.contains("1 temporaries"), "{err}");
    assert!(err.contains("(list 1, get 0"), "requests by kind: {err}");

    let out = dataflux(&["list", url, "--sequential", "--parallelism", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 4);
}

#[test]
fn list_fails_clearly_on_a_missing_directory_and_bad_urls() {
    let out = dataflux(&["list", "/definitely/not/here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/definitely/not/here"),
        "{}",
        stderr(&out)
    );
    let out = dataflux(&["list", "ftp://x/y"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unsupported scheme"),
        "{}",
        stderr(&out)
    );
    let out = dataflux(&["gc", "/tmp", "--older-than", "1w"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[tokio::test]
async fn list_on_the_emulator_matches_in_every_mode() {
    let Some((bucket, store)) = emulator_bucket("list").await else {
        return;
    };
    let names: Vec<String> = (0..120).map(|i| format!("imgs/{i:04}.jpg")).collect();
    for (i, n) in names.iter().enumerate() {
        store
            .put(n, Bytes::from(vec![7u8; i % 5]), PutMode::Overwrite)
            .await
            .expect("put");
    }
    store
        .put("imgs2/outside.jpg", Bytes::new(), PutMode::Overwrite)
        .await
        .expect("put");
    let expected: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}\t{}\n", i % 5))
        .collect();
    let url = format!("gs://{bucket}/imgs");
    for extra in [&[][..], &["--sequential"], &["--parallelism", "3"]] {
        let mut args: Vec<String> = vec!["list".into(), url.clone()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            dataflux(&args)
        })
        .await
        .expect("join");
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), expected, "{extra:?}");
    }
}

#[tokio::test]
async fn fetch_round_trips_every_object_and_leaves_no_temporaries() {
    let Some((bucket, store)) = emulator_bucket("fetch").await else {
        return;
    };
    let mut expected = Vec::new();
    for i in 0..70usize {
        // Zero-byte objects, nested folders, a name with a space.
        let name = match i {
            0 => "data/empty.bin".to_string(),
            1 => "data/a b/c.jpg".to_string(),
            _ => format!("data/{}/{i:03}.jpg", i % 3),
        };
        let body: Vec<u8> = (0..(i * 37) % 500).map(|b| (b * i) as u8).collect();
        store
            .put(&name, Bytes::from(body.clone()), PutMode::Overwrite)
            .await
            .expect("put");
        expected.push((name, body));
    }
    let url = format!("gs://{bucket}/data/");
    for mode in [&["--stats"][..], &["--no-compose", "--concurrency", "4"]] {
        let dir = tempfile::tempdir().expect("tempdir");
        let to = dir.path().to_str().expect("utf-8").to_string();
        let mut args = vec!["fetch".to_string(), url.clone(), "--to".into(), to];
        args.extend(mode.iter().map(|s| s.to_string()));
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            dataflux(&args)
        })
        .await
        .expect("join");
        assert!(out.status.success(), "{mode:?}: {}", stderr(&out));
        for (name, body) in &expected {
            let path = dir.path().join(name.strip_prefix("data/").expect("prefix"));
            let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(&got, body, "{name} ({mode:?})");
        }
        let written = walk(dir.path());
        assert_eq!(written, expected.len(), "nothing else written");
        if mode.contains(&"--stats") {
            let err = stderr(&out);
            assert!(err.contains("fetched 70 objects"), "{err}");
            assert!(err.contains("composed: true"), "{err}");
            // 70 objects: 3 composites (32 + 32 + 6), each composed, read and deleted.
            assert!(err.contains("compose 3"), "{err}");
        }
        assert_eq!(temporaries(&store).await, 0, "{mode:?}");
    }
}

#[tokio::test]
async fn fetch_of_several_pages_writes_every_object_once() {
    // 1,100 objects in three folders: two pages, 35 composites. Every object once, nothing
    // else, no temporaries left.
    let Some((bucket, store)) = emulator_bucket("fetch-pages").await else {
        return;
    };
    let expected: Vec<(String, Vec<u8>)> = (0..1_100usize)
        .map(|i| {
            let name = format!("pages/{}/{i:05}.bin", i % 3);
            (name, format!("object {i}").into_bytes())
        })
        .collect();
    futures::stream::iter(expected.iter().cloned())
        .map(|(name, body)| {
            let store = store.clone();
            async move {
                store
                    .put(&name, Bytes::from(body), PutMode::Overwrite)
                    .await
                    .expect("put")
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let to = dir.path().to_str().expect("utf-8").to_string();
    let url = format!("gs://{bucket}/pages/");
    let out =
        tokio::task::spawn_blocking(move || dataflux(&["fetch", &url, "--to", &to, "--stats"]))
            .await
            .expect("join");
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, body) in &expected {
        let path = dir
            .path()
            .join(name.strip_prefix("pages/").expect("prefix"));
        let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&got, body, "{name}");
    }
    assert_eq!(walk(dir.path()), expected.len(), "nothing else written");
    let err = stderr(&out);
    assert!(err.contains("fetched 1100 objects"), "{err}");
    assert!(err.contains("composed: true"), "{err}");
    assert_eq!(temporaries(&store).await, 0);
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test]
async fn fetch_reports_bad_objects_and_exits_3() {
    let Some((bucket, store)) = emulator_bucket("fetch-bad").await else {
        return;
    };
    for name in ["d/good.jpg", "d/../../escape.jpg"] {
        store
            .put(name, Bytes::from_static(b"data"), PutMode::Overwrite)
            .await
            .expect("put");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let to = dir.path().join("out");
    let args = [
        "fetch".to_string(),
        format!("gs://{bucket}/d"),
        "--to".into(),
        to.to_str().expect("utf-8").into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dataflux(&args)
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("d/../../escape.jpg"), "{err}");
    assert!(err.contains("1 of 2 objects"), "{err}");
    assert_eq!(std::fs::read(to.join("good.jpg")).expect("good"), b"data");
    assert!(!dir.path().join("escape.jpg").exists());
    assert_eq!(temporaries(&store).await, 0);
}

#[test]
fn gc_deletes_only_stale_temporaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    write(root, "dataflux-tmp/old-run/1000-0-0123456789ab", b"x");
    write(root, "dataflux-tmp/old-run/2000-1-abcdef012345", b"x");
    write(
        root,
        &format!("dataflux-tmp/new-run/{now_ms}-0-00000000beef"),
        b"x",
    );
    write(root, "my-tmp/r/1000-0-0123456789ab", b"x");
    write(root, "data/keep.jpg", b"x");
    // User objects whose names start with digits or dates, even under the temporary prefix,
    // and a run's bookkeeping: never temporaries.
    for name in [
        "photos/2023-01-01.jpg",
        "scans/12345",
        "dataflux-tmp/2023-01-01.jpg",
        "dataflux-tmp/run/1000-0-notahexname!",
        "dataflux-tmp/run/_rendezvous/0",
    ] {
        write(root, name, b"x");
    }
    let url = root.to_str().expect("utf-8");

    let out = dataflux(&["gc", url, "--temp-prefix", ""]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an empty prefix is refused: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--temp-prefix"));
    let out = dataflux(&["gc", url, "--older-than", "1h", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "dataflux-tmp/old-run/1000-0-0123456789ab\ndataflux-tmp/old-run/2000-1-abcdef012345\n"
    );
    let out = dataflux(&["gc", url, "--older-than", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "2\n");
    let out = dataflux(&["gc", url]);
    assert_eq!(stdout(&out), "0\n", "default 1h: the fresh one stays");
    let out = dataflux(&["gc", url, "--older-than", "0"]);
    assert_eq!(stdout(&out), "1\n");
    let out = dataflux(&["gc", url, "--older-than", "30m", "--temp-prefix", "my-tmp"]);
    assert_eq!(stdout(&out), "1\n");
    assert!(root.join("data/keep.jpg").exists());
    for name in [
        "photos/2023-01-01.jpg",
        "scans/12345",
        "dataflux-tmp/2023-01-01.jpg",
        "dataflux-tmp/run/_rendezvous/0",
    ] {
        assert!(root.join(name).exists(), "{name} kept");
    }
    let out = dataflux(&["list", url, "--temp-prefix", "dataflux-tmp/"]);
    assert!(
        stdout(&out).starts_with("data/keep.jpg\t1\n"),
        "{}",
        stdout(&out)
    );
}
