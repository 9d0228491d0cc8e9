use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ferrolb_model::config::NodeInfo;
use ferrolb_speaker::announcer::{Announcer, Options};
use ferrolb_speaker::bgp::frr::FrrOptions;
use ferrolb_speaker::dataplane::AnnouncePolicy;
use ferrolb_speaker::metrics::Metrics;
use ferrolb_speaker::source::file::{FileOptions, FileSource};
use tracing_subscriber::EnvFilter;

/// Served when no `--config` is given: documentation addresses only.
const DEMO_CONFIG: &str = include_str!("../../examples/documentation-net.yaml");

#[derive(Parser)]
#[command(version, about = "FerroLB speaker: answers ARP and NDP for LoadBalancer addresses")]
struct Cli {
    /// Log level or filter, used when RUST_LOG is unset.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run in a Kubernetes cluster (the default): addresses from the Services' status,
    /// pools and L2Advertisements from the API, peers from the speaker pods.
    Run {
        #[arg(long, env = "NODE_NAME")]
        node_name: String,
        /// Where IPAddressPools and L2Advertisements are read, and the speaker pods run.
        #[arg(long, env = "POD_NAMESPACE", default_value = "metallb-system")]
        namespace: String,
        /// This node's address (on the host network, the pod IP), for membership.
        #[arg(long, env = "POD_IP")]
        pod_ip: std::net::IpAddr,
        /// This speaker's Pod (downward API): the owner of its ServiceL2Status objects.
        #[arg(long, env = "POD_NAME")]
        pod_name: Option<String>,
        #[arg(long, env = "POD_UID")]
        pod_uid: Option<String>,
        #[arg(long, default_value_t = 7946)]
        cluster_port: u16,
        /// The membership keys (the mounted Secret; see --cluster-key-file of `standalone`).
        #[arg(long, default_value = "/etc/ferrolb/memberlist/secretkey")]
        cluster_key_file: PathBuf,
        #[arg(long, default_value = "app.kubernetes.io/name=ferrolb,app.kubernetes.io/component=speaker")]
        speaker_selector: String,
        #[arg(long, default_value = "[::]:7472")]
        metrics_bind: SocketAddr,
        #[arg(long)]
        lb_class: Option<String>,
        #[command(flatten)]
        announce: AnnounceArgs,
        #[command(flatten)]
        timing: TimingArgs,
        /// MetalLB's `metallb-excludel2` ConfigMap as mounted: interface name patterns
        /// never announced on; without the file, MetalLB's shipped list.
        #[arg(long, default_value = ferrolb_speaker::interfaces::EXCLUDEL2_PATH)]
        excludel2: PathBuf,
        #[command(flatten)]
        frr: FrrArgs,
    },
    /// Run from a YAML file of IPAddressPools, L2Advertisements and Services, no cluster.
    Standalone {
        /// The YAML file; without it, the embedded demo configuration (documentation
        /// addresses 198.51.100.10-11 and 2001:db8:100::10) is served.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, env = "NODE_NAME")]
        node_name: String,
        /// Extra node labels for L2Advertisement nodeSelectors (key=value, repeatable).
        #[arg(long = "node-label", value_parser = parse_label)]
        node_labels: Vec<(String, String)>,
        #[arg(long, default_value = "[::]:7472")]
        metrics_bind: SocketAddr,
        #[command(flatten)]
        announce: AnnounceArgs,
        /// Repeat one round this often after the burst (0: never).
        #[arg(long, default_value = "0", value_parser = parse_ms)]
        gratuitous_refresh_ms: Duration,
        /// How often to check the file and the interfaces for changes.
        #[arg(long, default_value = "1000", value_parser = parse_ms)]
        poll_ms: Duration,
        /// Serve Services of this `loadBalancerClass` (default: those without a class).
        #[arg(long)]
        lb_class: Option<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Interface name patterns (RE2, as MetalLB's `announcedInterfacesToExclude`) never
        /// announced on unless an L2Advertisement names them; repeatable. Default: MetalLB's
        /// shipped list (docker, cbr, dummy, virbr, lxcbr, veth, lo, cali, tunl, flannel,
        /// kube-ipvs, cni, nodelocaldns, lxc). `--exclude-interface ''` excludes nothing.
        #[arg(long = "exclude-interface")]
        exclude_interfaces: Vec<String>,
        /// Or MetalLB's `excludel2.yaml` file (read again when it changes).
        #[arg(long, conflicts_with = "exclude_interfaces")]
        excludel2: Option<PathBuf>,
        #[command(flatten)]
        frr: FrrArgs,
    },
}

/// BGP mode: the FRR the speaker drives.
#[derive(clap::Args)]
struct FrrArgs {
    /// Where to write FRR's configuration (then applied with frr-reload.py). Without it,
    /// BGP objects are validated but not announced.
    #[arg(long)]
    frr_config: Option<PathBuf>,
    #[arg(long, default_value = "/usr/lib/frr/frr-reload.py")]
    frr_reload: PathBuf,
    #[arg(long, default_value = "/usr/bin/vtysh")]
    frr_vtysh: PathBuf,
    /// The FRR daemons' vty socket directory, when not FRR's default.
    #[arg(long)]
    frr_vty_socket: Option<PathBuf>,
    /// How often FRR's sessions are read (and a failed reload retried).
    #[arg(long, default_value = "2000", value_parser = parse_ms)]
    frr_poll_ms: Duration,
}

impl FrrArgs {
    fn options(self) -> Option<FrrOptions> {
        Some(FrrOptions {
            config: self.frr_config?,
            reload: self.frr_reload,
            vtysh: self.frr_vtysh,
            vty_socket: self.frr_vty_socket,
            poll: self.frr_poll_ms,
        })
    }
}

#[derive(clap::Args)]
struct AnnounceArgs {
    /// Gratuitous ARP / unsolicited NA rounds on claiming an address.
    #[arg(long, default_value_t = 5)]
    gratuitous_count: u32,
    #[arg(long, default_value = "1000", value_parser = parse_ms)]
    gratuitous_interval_ms: Duration,
}

#[derive(clap::Args)]
struct TimingArgs {
    #[arg(long, default_value = "40", value_parser = parse_ms)]
    cluster_heartbeat_ms: Duration,
    /// A member not heard from (directly or through another member) this long is dead.
    #[arg(long, default_value = "200", value_parser = parse_ms)]
    cluster_dead_after_ms: Duration,
    /// A member that rejoins is given addresses only after this long.
    #[arg(long, default_value = "10000", value_parser = parse_ms)]
    cluster_hold_down_ms: Duration,
}

impl TimingArgs {
    fn settings(&self) -> ferrolb_speaker::cluster::membership::Settings {
        ferrolb_speaker::cluster::membership::Settings {
            interval: self.cluster_heartbeat_ms,
            dead_after: self.cluster_dead_after_ms,
            hold_down: self.cluster_hold_down_ms,
            ..Default::default()
        }
    }
}

/// Sharing the addresses with other speakers: each address is answered by one member.
#[derive(clap::Args)]
struct ClusterArgs {
    /// Join a cluster, exchanging heartbeats on this UDP address (MetalLB's port is 7946).
    #[arg(long, requires = "cluster_key_file")]
    cluster_bind: Option<SocketAddr>,
    /// A member to contact first (repeatable); the others are learned from it.
    #[arg(long = "cluster-join", requires = "cluster_bind")]
    cluster_join: Vec<SocketAddr>,
    /// The cluster's shared secrets, one per line, at least 16 bytes each: the first signs
    /// what we send, every line is accepted (for rotation); read again when it changes.
    #[arg(long, requires = "cluster_bind")]
    cluster_key_file: Option<PathBuf>,
    #[command(flatten)]
    timing: TimingArgs,
}

impl ClusterArgs {
    fn options(self) -> Option<ferrolb_speaker::cluster::Options> {
        let settings = self.timing.settings();
        Some(ferrolb_speaker::cluster::Options {
            bind: self.cluster_bind?,
            join: self.cluster_join,
            key_file: self.cluster_key_file?,
            settings,
        })
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not key=value"))
}

fn parse_ms(s: &str) -> Result<Duration, String> {
    s.parse().map(Duration::from_millis).map_err(|_| format!("{s:?} is not a number of milliseconds"))
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve_metrics(
    bind: SocketAddr,
    metrics: &Arc<Metrics>,
    ready: Arc<ferrolb_runtime::Readiness>,
) -> anyhow::Result<()> {
    let listener = ferrolb_runtime::http::listen(bind).await.with_context(|| format!("cannot listen on {bind}"))?;
    let app = ferrolb_runtime::http::router(Arc::new(metrics.registry()), ready);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // No subcommand: `run`, as the DaemonSet starts it.
    let mut args: Vec<String> = std::env::args().collect();
    let known = ["run", "standalone", "help", "--help", "-h", "--version", "-V"];
    if !args.iter().skip(1).any(|a| known.contains(&a.as_str())) {
        args.insert(1, "run".into());
    }
    let cli = Cli::parse_from(args);
    init_logging(&cli.log_level, cli.log_format);
    match cli.command {
        Command::Run {
            node_name,
            namespace,
            pod_ip,
            pod_name,
            pod_uid,
            cluster_port,
            cluster_key_file,
            speaker_selector,
            metrics_bind,
            lb_class,
            announce,
            timing,
            excludel2,
            frr,
        } => {
            let metrics = Arc::new(Metrics::default());
            let ready = Arc::new(ferrolb_runtime::Readiness::default());
            serve_metrics(metrics_bind, &metrics, ready.clone()).await?;
            let opts = ferrolb_speaker::source::kubernetes::Options {
                node_name,
                namespace,
                lb_class,
                bind: SocketAddr::new(pod_ip, cluster_port),
                key_file: cluster_key_file,
                settings: timing.settings(),
                policy: AnnouncePolicy {
                    count: announce.gratuitous_count,
                    interval: announce.gratuitous_interval_ms,
                    refresh: None,
                },
                speaker_selector,
                pod: ferrolb_speaker::source::kubernetes::pod_owner(pod_name, pod_uid),
                excludel2,
                frr: frr.options(),
            };
            ferrolb_speaker::source::kubernetes::run(opts, metrics, ready).await
        }
        Command::Standalone {
            config,
            node_name,
            node_labels,
            metrics_bind,
            announce,
            gratuitous_refresh_ms,
            poll_ms,
            lb_class,
            cluster,
            exclude_interfaces,
            excludel2,
            frr,
        } => {
            let exclude = match exclude_interfaces.as_slice() {
                [] => ferrolb_speaker::interfaces::Exclusions::default(),
                patterns => ferrolb_speaker::interfaces::Exclusions::new(
                    patterns.iter().filter(|p| !p.is_empty()).cloned().collect(),
                )
                .context("--exclude-interface")?,
            };
            let mut node = NodeInfo::new(&node_name);
            node.labels.extend(node_labels);
            let policy = AnnouncePolicy {
                count: announce.gratuitous_count,
                interval: announce.gratuitous_interval_ms,
                refresh: (!gratuitous_refresh_ms.is_zero()).then_some(gratuitous_refresh_ms),
            };
            let metrics = Arc::new(Metrics::default());
            let ready = Arc::new(ferrolb_runtime::Readiness::default());
            serve_metrics(metrics_bind, &metrics, ready.clone()).await?;
            let embedded = config.is_none();
            let config = match config {
                Some(path) => path,
                None => {
                    let path = std::env::temp_dir().join(format!("ferrolb-demo-{}.yaml", std::process::id()));
                    std::fs::write(&path, DEMO_CONFIG).with_context(|| format!("cannot write {}", path.display()))?;
                    tracing::info!(path = %path.display(), "no --config: serving the embedded demo configuration");
                    path
                }
            };
            let demo_path = config.clone();
            let announcer = Announcer::new(
                Options { node, policy, exclude, excludel2, tick: poll_ms, frr: frr.options() },
                metrics.clone(),
            );
            let source = FileSource::new(FileOptions { config, poll: poll_ms, lb_class }, metrics)?;
            let result = announcer.run(source, cluster.options(), ready).await;
            if embedded {
                let _ = std::fs::remove_file(&demo_path);
            }
            result
        }
    }
}
