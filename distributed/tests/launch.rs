//! `dataflux-launch` as a user runs it: variables per child, exit codes, signals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LAUNCH: &str = env!("CARGO_BIN_EXE_dataflux-launch");
const PRINT_ENV: &str =
    "echo $RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $GROUP_RANK $MASTER_ADDR $MASTER_PORT";

/// The launcher with none of the variables it reads inherited from the test's environment.
fn launcher(args: &[&str]) -> Command {
    let mut cmd = Command::new(LAUNCH);
    cmd.args(args);
    for name in [
        "DATAFLUX_NNODES",
        "DATAFLUX_NPROC_PER_NODE",
        "DATAFLUX_RUN_ID",
        "JOB_COMPLETION_INDEX",
        "GROUP_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "RANK",
        "WORLD_SIZE",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

fn sorted_lines(stdout: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn one_node_children_get_their_ranks() {
    let out = launcher(&["--nproc-per-node", "3", "--", "sh", "-c", PRINT_ENV])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sorted_lines(&out.stdout),
        [
            "0 0 3 3 0 127.0.0.1 29500",
            "1 1 3 3 0 127.0.0.1 29500",
            "2 2 3 3 0 127.0.0.1 29500"
        ]
    );
}

#[test]
fn indexed_job_variables_set_node_rank_and_sizes() {
    let out = launcher(&["--", "sh", "-c", PRINT_ENV])
        .env("JOB_COMPLETION_INDEX", "1")
        .env("DATAFLUX_NNODES", "2")
        .env("DATAFLUX_NPROC_PER_NODE", "2")
        .env("MASTER_ADDR", "job-0.job")
        .env("MASTER_PORT", "29400")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sorted_lines(&out.stdout),
        ["2 0 4 2 1 job-0.job 29400", "3 1 4 2 1 job-0.job 29400"]
    );
}

#[test]
fn flags_override_the_environment() {
    let out = launcher(&[
        "--nproc-per-node",
        "1",
        "--nnodes",
        "3",
        "--node-rank",
        "2",
        "--",
        "sh",
        "-c",
        PRINT_ENV,
    ])
    .env("JOB_COMPLETION_INDEX", "0")
    .env("DATAFLUX_NNODES", "9")
    .env("MASTER_ADDR", "h")
    .env("MASTER_PORT", "1")
    .output()
    .unwrap();
    assert_eq!(sorted_lines(&out.stdout), ["2 0 3 1 2 h 1"]);
}

#[test]
fn children_share_one_run_id() {
    let out = launcher(&[
        "--nproc-per-node",
        "2",
        "--",
        "sh",
        "-c",
        "echo $DATAFLUX_RUN_ID",
    ])
    .output()
    .unwrap();
    let lines = sorted_lines(&out.stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], lines[1]);
    assert!(lines[0].starts_with("local-"), "{lines:?}");
}

#[test]
fn first_failing_child_sets_the_exit_code_and_stops_the_others() {
    let start = Instant::now();
    let out = launcher(&[
        "--nproc-per-node",
        "3",
        "--",
        "sh",
        "-c",
        r#"if [ "$LOCAL_RANK" = 1 ]; then exit 7; fi; exec sleep 60"#,
    ])
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the sleeping children were not stopped"
    );
}

#[test]
fn a_child_killed_by_a_signal_gives_128_plus_the_signal() {
    let out = launcher(&["--", "sh", "-c", "kill -KILL $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(128 + 9));
}

#[test]
fn all_children_succeeding_exits_zero() {
    let status = launcher(&["--nproc-per-node", "4", "--", "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_missing_program_is_an_error_naming_it() {
    let out = launcher(&["--", "/nonexistent/program"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/program"), "{stderr}");
}

#[test]
fn bad_node_rank_is_refused() {
    let out = launcher(&["--nnodes", "2", "--", "true"])
        .env("JOB_COMPLETION_INDEX", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("JOB_COMPLETION_INDEX=5"), "{stderr}");
}

#[test]
fn sigterm_is_forwarded_to_every_child() {
    let mut child = launcher(&[
        "--nproc-per-node",
        "2",
        "--",
        "sh",
        "-c",
        r#"trap 'echo term $LOCAL_RANK; exit 0' TERM; echo ready; while :; do sleep 0.05; done"#,
    ])
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let mut rest: Vec<String> = lines.map(Result::unwrap).collect();
    rest.sort();
    assert_eq!(rest, ["term 0", "term 1"]);
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "children exited 0 after the signal"
    );
}

#[test]
fn a_child_finished_with_bad_inputs_does_not_stop_the_others() {
    // Rank 0 exits 3 at once (the job's "finished with bad inputs"); rank 1 still works for
    // a while, then succeeds: it is not stopped, and the launcher reports 3.
    let script = r#"if [ "$LOCAL_RANK" = 0 ]; then exit 3; else sleep 0.5; echo survived; fi"#;
    let out = launcher(&["--nproc-per-node", "2", "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sorted_lines(&out.stdout), ["survived"]);
}

#[test]
fn text_output_of_children_is_prefixed_with_their_rank() {
    let out = launcher(&[
        "--log-format",
        "text",
        "--nproc-per-node",
        "2",
        "--",
        "sh",
        "-c",
        "echo hi $RANK; echo oops >&2",
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sorted_lines(&out.stdout),
        ["[rank 0] hi 0", "[rank 1] hi 1"]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[rank 0] oops") && stderr.contains("[rank 1] oops"),
        "{stderr}"
    );
    // JSON mode: the children are told so, and their lines go through untouched.
    let out = launcher(&[
        "--log-format",
        "json",
        "--",
        "sh",
        "-c",
        "echo $DATAFLUX_LOG_FORMAT",
    ])
    .output()
    .unwrap();
    assert_eq!(sorted_lines(&out.stdout), ["json"]);
}
