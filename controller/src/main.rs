//! `ferrolb-controller`: `run` (the default in a cluster) reconciles LoadBalancer Services
//! with the IPAddressPools; `plan` runs the allocator on a file of pools and Services;
//! `convert` turns MetalLB's legacy ConfigMap into IPAddressPool and L2Advertisement
//! objects.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ferrolb_model::allocate_all;
use ferrolb_model::config;
use serde::Serialize;

#[derive(Parser)]
#[command(version, about = "FerroLB controller: LoadBalancer address allocation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Yaml,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run in a cluster (in-cluster config or kubeconfig): watch Services, IPAddressPools
    /// and Namespaces, write Service status, pool status and Events.
    Run {
        /// Where IPAddressPools are read from (MetalLB's namespace by default).
        #[arg(long, env = "POD_NAMESPACE", default_value = "metallb-system")]
        namespace: String,
        /// Serve Services of this `loadBalancerClass` (default: those without a class).
        #[arg(long)]
        lb_class: Option<String>,
        #[arg(long, default_value = "[::]:7472")]
        metrics_bind: std::net::SocketAddr,
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Print, per Service, its addresses and pool or why it got none. Warnings go to stderr.
    Plan {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Yaml)]
        output: Output,
        /// Serve Services of this `loadBalancerClass` (default: those without a class).
        #[arg(long)]
        lb_class: Option<String>,
    },
    /// Convert MetalLB's legacy ConfigMap (address-pools) to IPAddressPool and
    /// L2Advertisement YAML on stdout; what cannot be converted goes to stderr.
    Convert {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Serialize)]
struct PlanEntry {
    service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn plan(path: &PathBuf, output: Output, lb_class: Option<&str>) -> anyhow::Result<String> {
    let loaded = config::load(&path.display().to_string(), &read(path)?)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let allocation = allocate_all(&loaded.config, lb_class);
    for (service, class) in &allocation.ignored {
        eprintln!("warning: {service}: loadBalancerClass {class:?} is not ours; left alone");
    }
    let (assigned, failed) = (allocation.assigned, allocation.failed);
    let mut by_service: HashMap<String, PlanEntry> = HashMap::new();
    for a in assigned {
        let addresses = a.addresses.iter().map(ToString::to_string).collect();
        by_service
            .insert(a.service.clone(), PlanEntry { service: a.service, pool: Some(a.pool), addresses, error: None });
    }
    for f in failed {
        let error = Some(f.error.to_string());
        by_service
            .insert(f.service.clone(), PlanEntry { service: f.service, pool: None, addresses: Vec::new(), error });
    }
    let entries: Vec<PlanEntry> = loaded.config.services.iter().filter_map(|s| by_service.remove(&s.key())).collect();
    Ok(match output {
        Output::Yaml => serde_saphyr::to_string(&entries)?,
        Output::Json => serde_json::to_string_pretty(&entries)? + "\n",
    })
}

fn convert(path: &PathBuf) -> anyhow::Result<String> {
    let text = read(path)?;
    let mut docs = Vec::new();
    let values: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).with_context(|| format!("{} is not valid YAML", path.display()))?;
    for value in values {
        if value["kind"].as_str() != Some("ConfigMap") {
            continue;
        }
        let Some(cfg) = value["data"]["config"].as_str() else {
            continue;
        };
        let namespace = value["metadata"]["namespace"].as_str().unwrap_or("metallb-system");
        let converted = ferrolb_model::legacy::convert(namespace, cfg)?;
        for w in &converted.warnings {
            eprintln!("warning: {w}");
        }
        for p in &converted.pools {
            docs.push(serde_saphyr::to_string(p)?);
        }
        for a in &converted.l2_advertisements {
            docs.push(serde_saphyr::to_string(a)?);
        }
    }
    if docs.is_empty() {
        bail!("{}: no MetalLB ConfigMap with an address-pools `config` key", path.display());
    }
    Ok(docs.join("---\n"))
}

fn run(
    namespace: String,
    lb_class: Option<String>,
    metrics_bind: std::net::SocketAddr,
    log_level: &str,
) -> anyhow::Result<()> {
    use std::sync::Arc;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let client =
            kube::Client::try_default().await.context("no Kubernetes configuration (in-cluster or kubeconfig)")?;
        let metrics = Arc::new(ferrolb_controller::k8s::Metrics::default());
        let registry = Arc::new(metrics.registry());
        let listener = ferrolb_runtime::http::listen(metrics_bind)
            .await
            .with_context(|| format!("cannot listen on {metrics_bind}"))?;
        // A standby replica is ready: it serves metrics and takes over when it must.
        let readiness = Arc::new(ferrolb_runtime::Readiness::default());
        readiness.set_serving(true);
        let app = ferrolb_runtime::http::router(registry, readiness.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let me = std::env::var("POD_NAME").unwrap_or_else(|_| format!("ferrolb-controller-{}", std::process::id()));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let work = async {
            ferrolb_controller::k8s::lead(client.clone(), namespace.clone(), me.clone()).await;
            ferrolb_controller::k8s::ensure_memberlist_secret(&client, &namespace).await?;
            let settings = ferrolb_controller::reconcile::Settings { namespace: namespace.clone(), lb_class };
            ferrolb_controller::k8s::run(client.clone(), settings, metrics, readiness).await?;
            anyhow::Ok(())
        };
        tokio::select! {
            r = work => r,
            _ = term.recv() => {
                // A standby takes over at once instead of after the Lease expires.
                if let Err(e) = ferrolb_controller::k8s::release(&client, &namespace, &me).await {
                    tracing::warn!(error = %e, "leader Lease not released; a standby takes over when it expires");
                }
                Ok(())
            }
        }
    })
}

fn main() -> anyhow::Result<()> {
    let out = match Cli::parse().command {
        Command::Run { namespace, lb_class, metrics_bind, log_level } => {
            return run(namespace, lb_class, metrics_bind, &log_level);
        }
        Command::Plan { config, output, lb_class } => plan(&config, output, lb_class.as_deref())?,
        Command::Convert { config } => convert(&config)?,
    };
    print!("{out}");
    Ok(())
}
