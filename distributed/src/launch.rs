//! `dataflux-launch`: one process per local GPU, torchrun-style.
//!
//! ```text
//! dataflux-launch --nproc-per-node 8 [--nnodes 2] [--node-rank 1] -- batch-inference --flag …
//! ```
//!
//! Each child gets `RANK = node_rank × nproc_per_node + LOCAL_RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `GROUP_RANK` (the node rank), and `MASTER_ADDR` /
//! `MASTER_PORT` passed through (on one node they default to `127.0.0.1:29500`), so that
//! [`crate::Topology::from_env`] reads them.
//!
//! - The node rank comes from `--node-rank`, else `JOB_COMPLETION_INDEX` (a Kubernetes
//!   Indexed Job), else `GROUP_RANK`, else 0.
//! - `--nnodes` defaults to `DATAFLUX_NNODES`, else 1; `--nproc-per-node` to
//!   `DATAFLUX_NPROC_PER_NODE`, else 1.
//! - `--run-id` (default `DATAFLUX_RUN_ID`) is passed on as `DATAFLUX_RUN_ID`; on a single
//!   node without one, an id is derived from the command and the process count, so that the
//!   children can rendezvous and the same launch run again carries on the same run (after
//!   exit 75, say) instead of starting a new one.
//! - SIGTERM and SIGINT are forwarded to every child's process group. When a child fails,
//!   the others get SIGTERM (and SIGKILL after `--grace-period-s`), and the launcher exits
//!   with the first failing child's code (128 + signal for a child killed by a signal);
//!   it exits 0 when every child succeeds. Codes in `--finished-codes` (default 3, the batch
//!   job's "finished with bad inputs") are not failures: the others go on, and the launcher
//!   exits with the highest such code.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use clap::Parser;
use futures::stream::{FuturesUnordered, StreamExt};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Command-line arguments of `dataflux-launch`.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "dataflux-launch",
    version,
    about = "Runs one process per local GPU with torchrun's RANK/WORLD_SIZE/LOCAL_RANK variables set."
)]
pub struct LaunchArgs {
    /// Processes to start on this node (one per GPU).
    #[arg(long, env = "DATAFLUX_NPROC_PER_NODE", default_value_t = 1)]
    pub nproc_per_node: usize,
    /// Number of nodes (pods) in the job.
    #[arg(long, env = "DATAFLUX_NNODES", default_value_t = 1)]
    pub nnodes: usize,
    /// This node's rank [default: JOB_COMPLETION_INDEX, else GROUP_RANK, else 0].
    #[arg(long)]
    pub node_rank: Option<usize>,
    /// Run id passed to the children as DATAFLUX_RUN_ID (same on every node).
    #[arg(long, env = "DATAFLUX_RUN_ID")]
    pub run_id: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when stopping children.
    #[arg(long, default_value_t = 30)]
    pub grace_period_s: u64,
    /// Exit codes that mean a child finished its part (the batch job's 3: done, with bad
    /// inputs): the others go on; the launcher exits with the highest of them when no child
    /// failed.
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub finished_codes: Vec<i32>,
    /// Log lines: text, json, or auto (text on a terminal). The children get the same
    /// format; text lines of theirs are prefixed with their rank.
    #[arg(long, env = crate::logs::LOG_FORMAT_ENV, value_enum, default_value_t = crate::logs::LogFormat::Auto)]
    pub log_format: crate::logs::LogFormat,
    /// The command to run, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// What will be started on this node, resolved from the arguments and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// This node's rank.
    pub node_rank: usize,
    /// Number of nodes.
    pub nnodes: usize,
    /// Processes on this node.
    pub nproc_per_node: usize,
    /// Variables set for every child (`MASTER_ADDR`, `MASTER_PORT`, `DATAFLUX_RUN_ID`).
    pub common_env: Vec<(String, String)>,
    /// Program and arguments.
    pub command: Vec<String>,
    /// SIGTERM-to-SIGKILL delay.
    pub grace_period: Duration,
    /// Non-zero exit codes that are not failures (see [`LaunchArgs::finished_codes`]).
    pub finished_codes: Vec<i32>,
    /// Text or JSON, decided: the children's format too.
    pub log_format: crate::logs::LogFormat,
}

impl LaunchArgs {
    /// Resolves the node rank and the children's shared variables, looking variables up
    /// through `var`.
    pub fn plan(&self, var: impl Fn(&str) -> Option<String>) -> Result<Plan> {
        for (name, value) in [
            ("DATAFLUX_NNODES", self.nnodes),
            ("DATAFLUX_NPROC_PER_NODE", self.nproc_per_node),
        ] {
            if value == 0 {
                return Err(Error::Inconsistent {
                    variable: name,
                    value,
                    reason: "must be at least 1".into(),
                });
            }
        }
        let (node_rank, source) = match self.node_rank {
            Some(r) => (r, "--node-rank"),
            None => node_rank_from_env(&var)?,
        };
        if node_rank >= self.nnodes {
            return Err(Error::Inconsistent {
                variable: source,
                value: node_rank,
                reason: format!(
                    "is not below the node count DATAFLUX_NNODES={}",
                    self.nnodes
                ),
            });
        }
        let single_node = self.nnodes == 1;
        let mut common_env = Vec::new();
        for (name, local_default) in [("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")] {
            match var(name).filter(|v| !v.is_empty()) {
                Some(v) => common_env.push((name.to_string(), v)),
                None if single_node => {
                    common_env.push((name.to_string(), local_default.to_string()))
                }
                None => tracing::warn!("{name} is not set for a {}-node job", self.nnodes),
            }
        }
        let run_id = match &self.run_id {
            Some(id) => Some(id.clone()),
            None if single_node => Some(local_run_id(&self.command, self.nproc_per_node)),
            None => None,
        };
        if let Some(id) = run_id {
            common_env.push(("DATAFLUX_RUN_ID".to_string(), id));
        }
        Ok(Plan {
            node_rank,
            nnodes: self.nnodes,
            nproc_per_node: self.nproc_per_node,
            common_env,
            command: self.command.clone(),
            grace_period: Duration::from_secs(self.grace_period_s),
            finished_codes: self.finished_codes.clone(),
            log_format: self.log_format.resolved(),
        })
    }
}

fn node_rank_from_env(var: &impl Fn(&str) -> Option<String>) -> Result<(usize, &'static str)> {
    for name in ["JOB_COMPLETION_INDEX", "GROUP_RANK"] {
        if let Some(value) = var(name) {
            let rank = value.trim().parse().map_err(|_| Error::NotANumber {
                variable: name,
                value,
            })?;
            return Ok((rank, name));
        }
    }
    Ok((0, "GROUP_RANK"))
}

impl Plan {
    /// World size: nodes × processes per node.
    pub fn world_size(&self) -> usize {
        self.nnodes * self.nproc_per_node
    }

    /// The variables of the child with `local_rank`.
    pub fn child_env(&self, local_rank: usize) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("RANK", self.node_rank * self.nproc_per_node + local_rank),
            ("WORLD_SIZE", self.world_size()),
            ("LOCAL_RANK", local_rank),
            ("LOCAL_WORLD_SIZE", self.nproc_per_node),
            ("GROUP_RANK", self.node_rank),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(self.common_env.iter().cloned());
        let format = match self.log_format {
            crate::logs::LogFormat::Json => "json",
            _ => "text",
        };
        env.push((crate::logs::LOG_FORMAT_ENV.into(), format.into()));
        // Each child's share of the CPUs for libraries that size a pool from the machine
        // (rayon's global pool under candle's CPU kernels), unless the user set it.
        if !env.iter().any(|(k, _)| k == "RAYON_NUM_THREADS")
            && std::env::var_os("RAYON_NUM_THREADS").is_none()
        {
            let budget = crate::Budget::detect(self.nproc_per_node);
            env.push((
                "RAYON_NUM_THREADS".into(),
                budget.decode_threads.to_string(),
            ));
        }
        env
    }
}

/// Parses nothing, resolves the plan from the process environment, runs it, and returns
/// the exit code the launcher should exit with.
pub async fn run(args: LaunchArgs) -> Result<i32> {
    let plan = args.plan(|name| std::env::var(name).ok())?;
    run_plan(&plan).await
}

/// Starts every child of `plan`, forwards signals, and returns the first failing child's
/// exit code, or 0.
pub async fn run_plan(plan: &Plan) -> Result<i32> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| Error::Signal {
        signal: "SIGTERM",
        source,
    })?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|source| Error::Signal {
        signal: "SIGINT",
        source,
    })?;
    let (program, args) = plan.command.split_first().ok_or_else(|| Error::Spawn {
        command: String::new(),
        local_rank: 0,
        source: std::io::Error::other("no command given"),
    })?;
    tracing::info!(
        node_rank = plan.node_rank,
        nnodes = plan.nnodes,
        nproc_per_node = plan.nproc_per_node,
        command = ?plan.command,
        "launching"
    );
    // Each child leads its own process group, so that signals reach its descendants too
    // and a terminal's Ctrl-C reaches the children only through the launcher.
    let mut groups: Vec<Option<Pid>> = Vec::with_capacity(plan.nproc_per_node);
    let mut waits = FuturesUnordered::new();
    // Text lines of the children are prefixed with their rank (JSON lines carry it).
    let prefix = plan.log_format != crate::logs::LogFormat::Json;
    let mut copies = tokio::task::JoinSet::new();
    for local_rank in 0..plan.nproc_per_node {
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(plan.child_env(local_rank))
            .process_group(0)
            .kill_on_drop(true);
        if prefix {
            command
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
        }
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            command: plan.command.join(" "),
            local_rank,
            source,
        })?;
        let rank = plan.node_rank * plan.nproc_per_node + local_rank;
        if let Some(out) = child.stdout.take() {
            copies.spawn(prefixed(out, rank, false));
        }
        if let Some(err) = child.stderr.take() {
            copies.spawn(prefixed(err, rank, true));
        }
        groups.push(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        );
        waits.push(async move { (local_rank, child.wait().await) });
    }

    let mut first_failure: Option<i32> = None;
    let mut finished_code = 0;
    let mut kill_at: Option<Instant> = None;
    loop {
        tokio::select! {
            next = waits.next() => {
                let Some((local_rank, status)) = next else { break };
                groups[local_rank] = None;
                let code = match status {
                    Ok(status) => exit_code(status),
                    Err(e) => {
                        tracing::error!(local_rank, "waiting for the child failed: {e}");
                        1
                    }
                };
                if plan.finished_codes.contains(&code) {
                    finished_code = finished_code.max(code);
                } else if code != 0 && first_failure.is_none() {
                    tracing::error!(local_rank, code, "child failed; stopping the others");
                    first_failure = Some(code);
                    signal_all(&groups, Signal::SIGTERM);
                    kill_at.get_or_insert(Instant::now() + plan.grace_period);
                }
            }
            _ = sigterm.recv() => {
                tracing::info!("forwarding SIGTERM");
                signal_all(&groups, Signal::SIGTERM);
                kill_at.get_or_insert(Instant::now() + plan.grace_period);
            }
            _ = sigint.recv() => {
                tracing::info!("forwarding SIGINT");
                signal_all(&groups, Signal::SIGINT);
                kill_at.get_or_insert(Instant::now() + plan.grace_period);
            }
            _ = sleep_until(kill_at), if kill_at.is_some() => {
                tracing::warn!("grace period over; killing the remaining children");
                signal_all(&groups, Signal::SIGKILL);
                kill_at = None;
            }
        }
    }
    // The children are gone: their pipes end, and every line is out.
    while copies.join_next().await.is_some() {}
    Ok(first_failure.unwrap_or(finished_code))
}

/// Writes and flushes: tokio's stdio hands writes to a background thread, so only a flush
/// says they are out (before the launcher exits).
async fn write_line(
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    text: &str,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    out.write_all(text.as_bytes()).await?;
    out.flush().await
}

/// Copies a child's output line by line with `[rank N] ` in front.
async fn prefixed(stream: impl tokio::io::AsyncRead + Unpin, rank: usize, stderr: bool) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let text = format!("[rank {rank}] {line}\n");
        let written = if stderr {
            write_line(&mut tokio::io::stderr(), &text).await
        } else {
            write_line(&mut tokio::io::stdout(), &text).await
        };
        if written.is_err() {
            return;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// The shell's convention: the exit code, or 128 + the signal that killed the process.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

fn signal_all(groups: &[Option<Pid>], sig: Signal) {
    for (local_rank, group) in groups.iter().enumerate() {
        if let Some(pgid) = group {
            if let Err(e) = killpg(*pgid, sig) {
                tracing::debug!(local_rank, "{sig} to process group {pgid}: {e}");
            }
        }
    }
}

/// The run id of a single-node launch without one: `local-` and a hash of the command and
/// the process count, the same for the same launch (FNV-1a, written out because it is six
/// lines and must not change between builds, as `std`'s hasher may).
fn local_run_id(command: &[String], nproc_per_node: usize) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let nproc = nproc_per_node.to_string();
    for part in command.iter().map(String::as_str).chain([nproc.as_str()]) {
        for byte in part.bytes().chain([0]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("local-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cli: &[&str]) -> LaunchArgs {
        let mut argv = vec!["dataflux-launch"];
        argv.extend_from_slice(cli);
        LaunchArgs::try_parse_from(argv).unwrap()
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn node_rank_precedence() {
        let a = args(&["--nproc-per-node", "8", "--nnodes", "4", "--", "true"]);
        let from = |pairs| a.plan(env(pairs)).unwrap().node_rank;
        assert_eq!(from(&[]), 0);
        assert_eq!(from(&[("GROUP_RANK", "1")]), 1);
        assert_eq!(
            from(&[("GROUP_RANK", "1"), ("JOB_COMPLETION_INDEX", "2")]),
            2
        );
        let explicit = args(&["--nnodes", "4", "--node-rank", "3", "--", "true"]);
        assert_eq!(
            explicit
                .plan(env(&[("JOB_COMPLETION_INDEX", "2")]))
                .unwrap()
                .node_rank,
            3
        );
    }

    #[test]
    fn bad_node_ranks_name_their_source() {
        let a = args(&["--nnodes", "2", "--", "true"]);
        let err = a.plan(env(&[("JOB_COMPLETION_INDEX", "2")])).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Inconsistent {
                    variable: "JOB_COMPLETION_INDEX",
                    value: 2,
                    ..
                }
            ),
            "{err}"
        );
        let err = a.plan(env(&[("GROUP_RANK", "x")])).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotANumber {
                    variable: "GROUP_RANK",
                    ..
                }
            ),
            "{err}"
        );
        let err = args(&["--nnodes", "2", "--node-rank", "5", "--", "true"])
            .plan(env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("--node-rank=5"), "{err}");
        let err = args(&["--nproc-per-node", "0", "--", "true"])
            .plan(env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("DATAFLUX_NPROC_PER_NODE"), "{err}");
    }

    #[test]
    fn children_get_torchrun_variables() {
        let a = args(&[
            "--nproc-per-node",
            "4",
            "--nnodes",
            "2",
            "--node-rank",
            "1",
            "--run-id",
            "job-7",
            "--",
            "x",
        ]);
        let plan = a
            .plan(env(&[
                ("MASTER_ADDR", "job-0.svc"),
                ("MASTER_PORT", "29400"),
            ]))
            .unwrap();
        let child = plan.child_env(2);
        for (name, value) in [
            ("RANK", "6"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "2"),
            ("LOCAL_WORLD_SIZE", "4"),
            ("GROUP_RANK", "1"),
            ("MASTER_ADDR", "job-0.svc"),
            ("MASTER_PORT", "29400"),
            ("DATAFLUX_RUN_ID", "job-7"),
        ] {
            assert_eq!(get(&child, name), Some(value), "{name}");
        }
        // The children's variables are what Topology reads back.
        let t = crate::Topology::from_vars(|k| get(&child, k).map(str::to_string)).unwrap();
        assert_eq!(
            (t.rank, t.world_size, t.local_rank, t.node_rank),
            (6, 8, 2, 1)
        );
    }

    #[test]
    fn single_node_gets_local_defaults_and_a_run_id() {
        let plan = args(&["--", "x"]).plan(env(&[])).unwrap();
        let child = plan.child_env(0);
        assert_eq!(get(&child, "MASTER_ADDR"), Some("127.0.0.1"));
        assert!(get(&child, "DATAFLUX_RUN_ID").is_some_and(|id| id.starts_with("local-")));
        // The same launch again gets the same id (it carries on the run); another does not.
        let again = args(&["--", "x"]).plan(env(&[])).unwrap().child_env(0);
        assert_eq!(
            get(&again, "DATAFLUX_RUN_ID"),
            get(&child, "DATAFLUX_RUN_ID")
        );
        let other = args(&["--nproc-per-node", "2", "--", "x"])
            .plan(env(&[]))
            .unwrap();
        assert_ne!(
            get(&other.child_env(0), "DATAFLUX_RUN_ID"),
            get(&child, "DATAFLUX_RUN_ID")
        );
        let multi = args(&["--nnodes", "2", "--", "x"]).plan(env(&[])).unwrap();
        assert_eq!(get(&multi.child_env(0), "DATAFLUX_RUN_ID"), None);
        assert_eq!(get(&multi.child_env(0), "MASTER_ADDR"), None);
    }

    #[test]
    fn a_command_is_required() {
        assert!(LaunchArgs::try_parse_from(["dataflux-launch", "--nproc-per-node", "2"]).is_err());
    }
}
