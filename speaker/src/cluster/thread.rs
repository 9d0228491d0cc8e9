//! The membership protocol on a thread and a runtime of its own: heartbeats and failure
//! detection must never wait behind the speaker's other work (a reload parsing 10,000
//! Services, a burst of object changes, gratuitous announcements), or a busy speaker is
//! declared dead by the others and its addresses move for nothing. The speaker talks to it
//! through channels, with the same calls as [`Cluster`].

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::membership::{Me, Member};
use super::{Change, Cluster, Options};
use crate::announcer::Outcomes;
use crate::metrics::Metrics;

enum Command {
    Plan(u64),
    Seeds(Vec<SocketAddr>),
    Leave(oneshot::Sender<()>),
}

/// A handle on the membership thread.
#[derive(Debug)]
pub struct ClusterThread {
    members: Vec<Member>,
    changes: mpsc::UnboundedReceiver<(Vec<Member>, Change)>,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Plan(_) => "Plan",
            Command::Seeds(_) => "Seeds",
            Command::Leave(_) => "Leave",
        })
    }
}

impl ClusterThread {
    /// Starts membership on its own thread; fails as [`Cluster::start`] does.
    pub async fn start(
        opts: Options,
        me: Me,
        metrics: Arc<Metrics>,
        outcomes: Outcomes,
    ) -> anyhow::Result<ClusterThread> {
        let (started_tx, started_rx) = oneshot::channel();
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let (commands, mut commands_rx) = mpsc::unbounded_channel::<Command>();
        std::thread::Builder::new().name("membership".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    let _ = started_tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut cluster = match Cluster::start(opts, me, metrics, outcomes).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(cluster.members().to_vec()));
                loop {
                    tokio::select! {
                        change = cluster.changed() => {
                            if changes_tx.send((cluster.members().to_vec(), change)).is_err() {
                                return;
                            }
                        }
                        command = commands_rx.recv() => match command {
                            Some(Command::Plan(digest)) => cluster.set_plan(digest),
                            Some(Command::Seeds(seeds)) => cluster.set_seeds(seeds),
                            Some(Command::Leave(done)) => {
                                cluster.leave().await;
                                let _ = done.send(());
                                return;
                            }
                            None => return,
                        },
                    }
                }
            });
        })?;
        let members = started_rx.await.map_err(|_| anyhow::anyhow!("the membership thread stopped"))??;
        Ok(ClusterThread { members, changes, commands })
    }

    /// The live members; empty while this node must announce nothing.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Waits until the member list changes; several changes queued meanwhile come as one.
    /// Cancel-safe.
    pub async fn changed(&mut self) -> Change {
        let Some((members, mut change)) = self.changes.recv().await else {
            return std::future::pending().await;
        };
        self.members = members;
        while let Ok((members, more)) = self.changes.try_recv() {
            self.members = members;
            change.lost |= more.lost;
            change.joined |= more.joined;
        }
        change
    }

    pub fn set_plan(&mut self, digest: u64) {
        let _ = self.commands.send(Command::Plan(digest));
    }

    pub fn set_seeds(&mut self, seeds: Vec<SocketAddr>) {
        let _ = self.commands.send(Command::Seeds(seeds));
    }

    /// Tells every member we are going, and returns once that is sent.
    pub async fn leave(&mut self) {
        let (done, sent) = oneshot::channel();
        if self.commands.send(Command::Leave(done)).is_ok() {
            let _ = sent.await;
        }
    }
}
