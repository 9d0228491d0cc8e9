//! Driving FRR: the rendered configuration is written to a file and applied with FRR's
//! own reload (`frr-reload.py --reload`, which diffs it against the running configuration
//! and applies only the difference, so an unrelated change never resets a session); the
//! sessions are read back as JSON from `vtysh` for metrics, logs and readiness.
//!
//! One task does both, so a reload and a read never race; FRR not running yet is waited
//! for (warned once, not Ready) and retried on every poll.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_runtime::Readiness;
use tokio::process::Command;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::frr_config;
use super::neighbors::{self, Neighbor};
use crate::metrics::{Metrics, PeerLabels};

/// Where FRR is and how to reach it.
#[derive(Debug, Clone)]
pub struct FrrOptions {
    /// Where the configuration is written (FRR's `frr.conf`, or a file beside it).
    pub config: PathBuf,
    /// `frr-reload.py`.
    pub reload: PathBuf,
    /// `vtysh`.
    pub vtysh: PathBuf,
    /// The daemons' vty socket directory, when not FRR's default (`--vty_socket`).
    pub vty_socket: Option<PathBuf>,
    /// How often the sessions are read (and a failed reload retried).
    pub poll: Duration,
}

/// Why FRR could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum FrrError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot run {program}: {source}")]
    Spawn { program: PathBuf, source: std::io::Error },
    #[error("{program} failed ({status}): {output}")]
    Failed { program: PathBuf, status: std::process::ExitStatus, output: String },
    #[error("vtysh's answer: {0}")]
    Parse(String),
}

/// The handle the announcer keeps: the configuration FRR should run.
pub struct Frr {
    wanted: watch::Sender<String>,
}

/// Not the configuration: it holds the peers' passwords.
impl std::fmt::Debug for Frr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frr").finish_non_exhaustive()
    }
}

impl Frr {
    /// Starts the task that applies configurations and reads the sessions.
    pub fn start(opts: FrrOptions, metrics: Arc<Metrics>, ready: Arc<Readiness>) -> Frr {
        let (wanted, rx) = watch::channel(String::new());
        tokio::spawn(run(opts, rx, metrics, ready));
        Frr { wanted }
    }

    /// Asks for `config` to run; nothing happens if it already does.
    pub fn want(&self, config: String) {
        self.wanted.send_if_modified(|current| {
            let changed = *current != config;
            *current = config;
            changed
        });
    }
}

/// What readiness waits for while FRR cannot be driven.
const WAITING: &str = "FRR";

async fn run(opts: FrrOptions, mut wanted: watch::Receiver<String>, metrics: Arc<Metrics>, ready: Arc<Readiness>) {
    let mut applied: Option<String> = None;
    let mut sessions: Vec<Neighbor> = Vec::new();
    let mut down = SessionsDown::default();
    let mut poll = tokio::time::interval(opts.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Nothing to apply before the announcer's first plan.
    let mut started = false;
    loop {
        tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
                started = true;
            }
            _ = poll.tick() => {}
        }
        if !started {
            continue;
        }
        let want = wanted.borrow_and_update().clone();
        if applied.as_ref() != Some(&want) {
            match apply(&opts, applied.as_deref(), &want).await {
                Ok(()) => {
                    info!(config = %opts.config.display(), "FRR configuration applied");
                    applied = Some(want.clone());
                    if ready.done(WAITING) {
                        info!("FRR reached");
                    }
                }
                Err(e) => {
                    // Part of it may be in: the next try diffs against FRR, not our cache.
                    applied = None;
                    if ready.wait_for(WAITING, e.to_string()) {
                        warn!(error = %e, "waiting for FRR: its configuration could not be applied; retrying");
                    }
                    continue;
                }
            }
        }
        match read_sessions(&opts).await {
            // bgpd restarted without our configuration (a host's FRR started with an
            // empty file, a daemon restarted by hand): apply it again at the next poll.
            Ok(now) if now.is_empty() && want.contains(" remote-as ") => {
                warn!("FRR runs without the speaker's BGP sessions (restarted?): applying the configuration again");
                applied = None;
                report_sessions(&sessions, &[], &metrics);
                sessions.clear();
            }
            Ok(now) => {
                report_sessions(&sessions, &now, &metrics);
                down.update(&now, opts.poll * PEER_GRACE_POLLS, &ready);
                sessions = now;
            }
            Err(e) => {
                error!(error = %e, "cannot read FRR's BGP sessions");
                // Nothing known of them: their series go rather than say "up".
                report_sessions(&sessions, &[], &metrics);
                sessions.clear();
                applied = None;
                ready.wait_for(WAITING, format!("cannot read its sessions: {e}"));
            }
        }
    }
}

/// Writes `config` (atomically: a reload never reads half a file) and reloads FRR with it,
/// the withdrawn prefixes first in one batch (`before`: what was applied last).
async fn apply(opts: &FrrOptions, before: Option<&str>, config: &str) -> Result<(), FrrError> {
    let withdrawn = before.map(|b| frr_config::withdrawn_networks(b, config)).unwrap_or_default();
    if !withdrawn.is_empty() {
        let batch = opts.config.with_extension("withdrawn");
        write_private(&batch, &withdrawn).map_err(|source| FrrError::Write { path: batch.clone(), source })?;
        let mut cmd = Command::new(&opts.vtysh);
        if let Some(socket) = &opts.vty_socket {
            cmd.arg("--vty_socket").arg(socket);
        }
        cmd.arg("-f").arg(&batch);
        // A failure here only leaves the deletions to frr-reload.py.
        if let Err(e) = run_command(&opts.vtysh, cmd).await {
            tracing::debug!(error = %e, "withdrawing in one batch failed; frr-reload.py will");
        }
        let _ = std::fs::remove_file(&batch);
    }
    let tmp = opts.config.with_extension("new");
    // Owner-only: it holds the peers' passwords.
    write_private(&tmp, config).map_err(|source| FrrError::Write { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, &opts.config).map_err(|source| FrrError::Write { path: opts.config.clone(), source })?;
    let dir = opts.config.parent().unwrap_or(Path::new("."));
    let mut cmd = Command::new(&opts.reload);
    cmd.arg("--reload").arg("--stdout").arg("--confdir").arg(dir).arg("--rundir").arg(dir);
    if let Some(bindir) = opts.vtysh.parent().filter(|p| !p.as_os_str().is_empty()) {
        cmd.arg("--bindir").arg(bindir);
    }
    if let Some(socket) = &opts.vty_socket {
        cmd.arg("--vty_socket").arg(socket);
    }
    cmd.arg(&opts.config);
    run_command(&opts.reload, cmd).await.map(drop)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

async fn read_sessions(opts: &FrrOptions) -> Result<Vec<Neighbor>, FrrError> {
    let mut cmd = Command::new(&opts.vtysh);
    if let Some(socket) = &opts.vty_socket {
        cmd.arg("--vty_socket").arg(socket);
    }
    cmd.arg("-c").arg("show bgp vrf all neighbors json");
    let out = run_command(&opts.vtysh, cmd).await?;
    neighbors::parse(&String::from_utf8_lossy(&out.stdout)).map_err(FrrError::Parse)
}

/// How long a vtysh or frr-reload.py may take before it is killed (1,000 Services reload
/// in about a second).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

async fn run_command(program: &Path, mut cmd: Command) -> Result<Output, FrrError> {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let spawn = |source| FrrError::Spawn { program: program.to_path_buf(), source };
    let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .map_err(|_| spawn(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 120 s: killed")))?
        .map_err(spawn)?;
    if out.status.success() {
        return Ok(out);
    }
    // frr-reload.py logs its failures to stdout (`--stdout`); keep the tail of both.
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
    Err(FrrError::Failed { program: program.to_path_buf(), status: out.status, output: tail })
}

/// How many reads a session may stay down before `/readyz` names its peer (sessions take
/// a few seconds to come up; a router that never answers should not wait long).
const PEER_GRACE_POLLS: u32 = 10;

/// Since when each session is down, to name in `/readyz` the peers down too long.
#[derive(Debug, Default)]
struct SessionsDown(std::collections::BTreeMap<String, std::time::Instant>);

impl SessionsDown {
    fn update(&mut self, now: &[Neighbor], grace: Duration, ready: &Readiness) {
        let what = |label: &str| format!("BGP peer {label}");
        let at = std::time::Instant::now();
        let mut seen = std::collections::BTreeSet::new();
        for n in now {
            let label = format!("{} (vrf {})", n.peer_label(), n.vrf);
            seen.insert(label.clone());
            if n.up() {
                self.0.remove(&label);
                ready.done(&what(&label));
                continue;
            }
            let since = *self.0.entry(label.clone()).or_insert(at);
            if at.duration_since(since) >= grace {
                let why = format!(
                    "session {} for {}s{}",
                    n.state,
                    at.duration_since(since).as_secs(),
                    n.last_reset.as_deref().map(|r| format!(" (last reset: {r})")).unwrap_or_default()
                );
                if ready.wait_for(&what(&label), why.clone()) {
                    warn!(peer = %label, "BGP {why}: not Ready until it is established");
                }
            }
        }
        // Peers no longer configured are no longer waited for.
        self.0.retain(|label, _| {
            let keep = seen.contains(label);
            if !keep {
                ready.done(&what(label));
            }
            keep
        });
    }
}

/// Sets MetalLB's BGP metrics from the sessions `now`, and logs every session that came
/// up or went down since `before` (with FRR's reason).
fn report_sessions(before: &[Neighbor], now: &[Neighbor], metrics: &Metrics) {
    for n in now {
        let labels = PeerLabels { peer: n.peer_label(), vrf: n.vrf.clone() };
        let was = before.iter().find(|b| b.vrf == n.vrf && b.address == n.address);
        // The port is learned once connected: the series under the old label goes.
        if let Some(old) = was.filter(|b| b.port != n.port) {
            let old = PeerLabels { peer: old.peer_label(), vrf: old.vrf.clone() };
            metrics.bgp_session_up.remove(&old);
            metrics.bgp_announced_prefixes.remove(&old);
            metrics.bgp_updates_sent.remove(&old);
        }
        match (was.map(Neighbor::up), n.up()) {
            (Some(false) | None, true) => info!(peer = %labels.peer, vrf = %n.vrf, "BGP session established"),
            (Some(true), false) => warn!(
                peer = %labels.peer,
                vrf = %n.vrf,
                state = %n.state,
                reason = n.last_reset.as_deref().unwrap_or(""),
                "BGP session down"
            ),
            _ => {}
        }
        metrics.bgp_session_up.get_or_create(&labels).set(i64::from(n.up()));
        metrics.bgp_announced_prefixes.get_or_create(&labels).set(n.prefixes_sent);
        // FRR's counters restart with the session's daemon: a lower value is a new count.
        let counter = metrics.bgp_updates_sent.get_or_create(&labels);
        let previous = was.map_or(0, |b| b.updates_sent);
        let delta = if n.updates_sent >= previous { n.updates_sent - previous } else { n.updates_sent };
        counter.inc_by(delta);
    }
    // Sessions no longer configured leave the metrics.
    for b in before.iter().filter(|b| !now.iter().any(|n| n.vrf == b.vrf && n.address == b.address)) {
        let labels = PeerLabels { peer: b.peer_label(), vrf: b.vrf.clone() };
        metrics.bgp_session_up.remove(&labels);
        metrics.bgp_announced_prefixes.remove(&labels);
        metrics.bgp_updates_sent.remove(&labels);
    }
}
