//! Standalone mode: the configuration comes from a YAML file instead of a cluster.
//! SIGHUP or a change to the file reloads it; an invalid file is reported and the last
//! good configuration keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrolb_model::config::{self, Plan};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::cluster::membership::Me;
use crate::cluster::{self as cluster, ClusterThread};
use crate::core::{Speaker, stamp};
use crate::metrics::ResultLabel;

/// Reads, validates and allocates `path`, logging warnings; returns what may be announced.
fn load_and_allocate(path: &std::path::Path, lb_class: Option<&str>) -> anyhow::Result<Plan> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    let loaded = config::load(&name, &text)?;
    for w in &loaded.warnings {
        warn!(object = %w.object, field = %w.field, "{}", w.message);
    }
    // The controller's allocator, so Services that ask for no address get one, the same
    // one on every speaker reading this file.
    // Only what was assigned is kept: the allocator's own tables go before the plan is
    // built, which lowers the reload's peak memory.
    let ferrolb_model::Allocation { assigned, failed, ignored, .. } =
        ferrolb_model::allocate_all(&loaded.config, lb_class);
    for f in &failed {
        warn!(service = %f.service, "no address: {}", f.error);
    }
    for (service, class) in &ignored {
        info!(%service, %class, "loadBalancerClass is not ours; left alone");
    }
    Ok(Plan::new(&loaded.config, &assigned))
}

/// Where the file source reads from, and how it shares the addresses.
#[derive(Debug, Clone)]
pub struct FileOptions {
    pub config: PathBuf,
    /// How often the file and the interfaces are checked for changes.
    pub poll: Duration,
    /// The `loadBalancerClass` served; `None` serves Services without one.
    pub lb_class: Option<String>,
    /// Share the addresses with other speakers; `None`: this node announces them all.
    pub cluster: Option<cluster::Options>,
}

async fn members_changed(cluster: &mut Option<ClusterThread>) -> cluster::Change {
    match cluster {
        Some(c) => c.changed().await,
        None => std::future::pending().await,
    }
}

impl Speaker {
    /// Reads and validates the file. On success the new configuration is applied; on
    /// failure every problem is logged and the previous configuration stays.
    pub fn reload(&mut self, file: &FileOptions) -> anyhow::Result<()> {
        // Parsing and allocating build large temporary trees. Done on a short-lived thread,
        // they live in that thread's malloc arena, which is handed back whole afterwards;
        // only the (cloned, compact) announcements stay, instead of long-lived tables
        // being scattered through the holes the temporaries left in the main heap.
        let (config_path, lb_class) = (&file.config, file.lb_class.as_deref());
        let result = std::thread::scope(|scope| {
            scope
                .spawn(|| load_and_allocate(config_path, lb_class))
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("configuration loading panicked")))
        });
        let ok = result.is_ok();
        self.metrics
            .config_reloads
            .get_or_create(&ResultLabel { result: if ok { "success" } else { "failure" }.into() })
            .inc();
        self.metrics.config_last_reload_successful.set(i64::from(ok));
        match result {
            Ok(plan) => {
                // Copied into this thread's heap: the loading thread's arena, holding only
                // freed temporaries then, is handed back whole.
                let compact = plan.clone();
                drop(plan);
                self.set_plan(compact);
                Ok(())
            }
            Err(e) => {
                if let Some(ferrolb_model::Error::InvalidConfig(issues)) = e.downcast_ref() {
                    for i in issues {
                        error!(object = %i.object, field = %i.field, "{}", i.message);
                    }
                }
                if self.plan.is_some() {
                    error!(error = %e, "configuration rejected; the last good configuration keeps serving");
                }
                Err(e)
            }
        }
    }

    /// Serves until SIGTERM or SIGINT. The first load must succeed.
    pub async fn run(mut self, file: FileOptions, ready: Arc<ferrolb_runtime::Readiness>) -> anyhow::Result<()> {
        let mut cluster = match file.cluster.clone() {
            Some(opts) => {
                let me = Me { name: self.opts.node.name.clone(), labels: self.opts.node.labels.clone() };
                let c = ClusterThread::start(opts, me, self.metrics.clone()).await?;
                self.members = Some(c.members().to_vec());
                Some(c)
            }
            None => None,
        };
        self.reload(&file)?;
        if let Some(c) = &mut cluster {
            c.set_plan(self.plan_digest());
        }
        ready.set_serving(true);
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut poll = tokio::time::interval(file.poll);
        let mut last = stamp(&file.config);
        let mut links = crate::core::LinkWatch::open();
        loop {
            tokio::select! {
                _ = links.changed() => {
                    self.check_interfaces();
                    self.report_sockets(&ready);
                    ready.set_serving(self.healthy());
                }
                _ = hup.recv() => {
                    info!("SIGHUP: reloading");
                    last = stamp(&file.config);
                    let _ = self.reload(&file);
                }
                _ = poll.tick() => {
                    let now = stamp(&file.config);
                    if now != last {
                        info!("configuration file changed: reloading");
                        last = now;
                        let _ = self.reload(&file);
                    } else {
                        self.tick(links.available());
                    }
                    self.report_sockets(&ready);
                    ready.set_serving(self.healthy());
                }
                change = members_changed(&mut cluster) => {
                    let members = cluster.as_ref().map(|c| c.members().to_vec()).unwrap_or_default();
                    self.set_members(members, change);
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
            if let Some(c) = &mut cluster {
                c.set_plan(self.plan_digest());
            }
        }
        // Stop answering first, then tell the others: no moment with two owners.
        self.stop();
        if let Some(c) = &mut cluster {
            c.leave().await;
            info!("left the cluster");
        }
        Ok(())
    }
}
