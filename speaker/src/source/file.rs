//! The file source (standalone mode): the configuration comes from a YAML file instead
//! of a cluster. SIGHUP or a change to the file reloads it; an invalid file is reported and
//! the last good configuration keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ferrolb_model::config::{self, Plan};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info, warn};

use crate::announcer::{Change, Outcome, Source, stamp};
use crate::metrics::{Metrics, ResultLabel};

/// Reads, validates and allocates `path`, logging warnings; returns what may be announced.
fn load_and_allocate(path: &std::path::Path, lb_class: Option<&str>) -> anyhow::Result<Plan> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    let loaded = config::load(&name, &text)?;
    for w in &loaded.warnings {
        warn!(object = %w.object, field = %w.field, "{}", w.message);
    }
    // The allocator the controller uses, so Services that ask for no address get one, the same
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

/// Where the file source reads from.
#[derive(Debug, Clone)]
pub struct FileOptions {
    pub config: PathBuf,
    /// How often the file is checked for changes.
    pub poll: Duration,
    /// The `loadBalancerClass` served; `None` serves Services without one.
    pub lb_class: Option<String>,
}

/// Plans from a file.
#[derive(Debug)]
pub struct FileSource {
    file: FileOptions,
    metrics: Arc<Metrics>,
    /// The file's identity when last read.
    last: Option<(SystemTime, u64)>,
    /// Whether a configuration was ever loaded (then a bad one leaves it serving).
    serving: bool,
    hup: Signal,
    poll: tokio::time::Interval,
}

impl FileSource {
    pub fn new(file: FileOptions, metrics: Arc<Metrics>) -> anyhow::Result<FileSource> {
        let hup = signal(SignalKind::hangup())?;
        let poll = tokio::time::interval(file.poll);
        Ok(FileSource { last: stamp(&file.config), file, metrics, serving: false, hup, poll })
    }

    /// Reads and validates the file. On failure every problem is logged; the caller keeps
    /// the previous plan.
    pub fn reload(&mut self) -> anyhow::Result<Plan> {
        // Parsing and allocating build large temporary trees. Done on a short-lived thread,
        // they live in that thread's malloc arena, which is handed back whole afterwards;
        // only the (cloned, compact) announcements stay, instead of long-lived tables
        // being scattered through the holes the temporaries left in the main heap.
        let (config_path, lb_class) = (&self.file.config, self.file.lb_class.as_deref());
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
                self.serving = true;
                // Copied into this thread's heap: the loading thread's arena, holding only
                // freed temporaries then, is handed back whole.
                let compact = plan.clone();
                drop(plan);
                Ok(compact)
            }
            Err(e) => {
                if let Some(ferrolb_model::Error::InvalidConfig(issues)) = e.downcast_ref() {
                    for i in issues {
                        error!(object = %i.object, field = %i.field, "{}", i.message);
                    }
                }
                if self.serving {
                    error!(error = %e, "configuration rejected; the last good configuration keeps serving");
                }
                Err(e)
            }
        }
    }
}

impl Source for FileSource {
    fn first_plan(&mut self) -> anyhow::Result<Plan> {
        self.reload()
    }

    async fn changed(&mut self) -> Change {
        loop {
            tokio::select! {
                _ = self.hup.recv() => {
                    info!("SIGHUP: reloading");
                    self.last = stamp(&self.file.config);
                }
                _ = self.poll.tick() => {
                    let now = stamp(&self.file.config);
                    if now == self.last {
                        continue;
                    }
                    info!("configuration file changed: reloading");
                    self.last = now;
                }
            }
            if let Ok(plan) = self.reload() {
                return Change::Plan(plan);
            }
        }
    }

    /// Conflicts and membership problems are logged where they are seen; a file has no
    /// objects to put Events or statuses on.
    fn report(&mut self, _: Outcome) {}
}
