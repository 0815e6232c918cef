//! The exactly-once scenarios on S3 (moto's server, which speaks S3's conditional writes:
//! `If-None-Match: *` makes claims and commits create-only). `.ci/test` starts it and sets
//! `AWS_ENDPOINT`; S3's timestamps have whole seconds, so leases here are seconds long.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use dataflux::{Location, Store};
use dataflux_distributed::Topology;
use dataflux_pipeline::{Job, JobSpec, Outcome};
use tokio_util::sync::CancellationToken;

/// A new bucket, or `None` (the test is skipped, saying so) without an S3 endpoint.
async fn bucket(tag: &str) -> Option<(String, Arc<dyn Store>)> {
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT") else {
        eprintln!(
            "AWS_ENDPOINT is not set: S3 test skipped. Run `bash .ci/test`, or start moto's \
             server (pip install 'moto[server]'; moto_server -p 5555) and export \
             AWS_ENDPOINT=http://127.0.0.1:5555 AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=x \
             AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1"
        );
        return None;
    };
    let name = format!("{tag}-{}", std::process::id());
    let resp = reqwest::Client::new()
        .put(format!("{}/{name}", endpoint.trim_end_matches('/')))
        .send()
        .await
        .expect("moto reachable");
    assert!(
        resp.status().is_success(),
        "create bucket: {}",
        resp.status()
    );
    let store = Location::parse(&format!("s3://{name}"))
        .unwrap()
        .open()
        .await
        .unwrap();
    Some((name, store))
}

fn s3_spec(bucket: &str, run: &str) -> JobSpec {
    spec("unused", run)
        .with_input(Location::parse(&format!("s3://{bucket}/imgs")).unwrap())
        .with_output(Location::parse(&format!("s3://{bucket}/out")).unwrap())
        .with_lease(Duration::from_secs(3))
}

async fn run(spec: &JobSpec, model: Arc<Checksum>, rank: usize, world: usize) -> Outcome {
    Job::run(
        spec,
        model,
        &Topology::new(rank, world).unwrap(),
        CancellationToken::new(),
    )
    .await
    .expect("rank finished")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_s3_a_zombie_and_a_reshape_write_every_row_once() {
    let Some((name, store)) = bucket("exactly-once").await else {
        return;
    };
    let (good, bad) = fill(&store, &name, 120).await;
    let model = Checksum::slow(Duration::from_millis(10));

    // Two live processes of rank 0 of 1.
    let spec = s3_spec(&name, "zombie");
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        run(&spec, model.clone(), 0, 1).await
    };
    let (a, b) = tokio::join!(run(&spec, model.clone(), 0, 1), second);
    for o in [&a, &b] {
        assert!(
            matches!(o, Outcome::Finished(_) | Outcome::AlreadyFinished { .. }),
            "{o:?}"
        );
    }
    check_exactly_once(&store, "zombie", &good, &bad).await;

    // Two ranks killed after a few commits, then three ranks.
    let spec = s3_spec(&name, "reshape");
    let two = futures::future::join(
        run(&spec, model.clone(), 0, 2),
        run(&spec, model.clone(), 1, 2),
    );
    tokio::select! {
        _ = two => panic!("the first attempt should not finish"),
        _ = wait_for_commits(&store, "reshape", 3) => {}
    }
    let three = futures::future::join3(
        run(&spec, model.clone(), 0, 3),
        run(&spec, model.clone(), 1, 3),
        run(&spec, model.clone(), 2, 3),
    )
    .await;
    for o in [&three.0, &three.1, &three.2] {
        assert!(matches!(o, Outcome::Finished(_)), "{o:?}");
    }
    assert_eq!(check_exactly_once(&store, "reshape", &good, &bad).await, 3);
}
