//! The standalone speaker under test, its configuration and its metrics; clusters of them.

#[allow(unused_imports)]
use super::*;

/// A speaker process in a namespace, killed on drop, with its config file removed.
#[derive(Debug)]
pub struct Speaker {
    child: Child,
    ns: String,
    pub config: PathBuf,
    pub log: PathBuf,
}

pub const METRICS: &str = "127.0.0.1:7472";

/// The speaker under test: this build's, or `FERROLB_SPEAKER_BIN` (a bench comparing an
/// older build in the same run).
pub fn speaker_binary() -> String {
    std::env::var("FERROLB_SPEAKER_BIN").unwrap_or_else(|_| crate::binary("ferrolb-speaker").display().to_string())
}

impl Speaker {
    pub fn start(ns: &Netns, config: &str, extra: &[&str]) -> Speaker {
        Speaker::start_under(ns, &[], config, extra)
    }

    /// Starts the speaker under `wrapper` (a command that runs the rest of its arguments,
    /// such as `faketime`).
    pub fn start_under(ns: &Netns, wrapper: &[&str], config: &str, extra: &[&str]) -> Speaker {
        let id = unique("speaker");
        let path = std::env::temp_dir().join(format!("ferrolb-{id}.yaml"));
        let log = std::env::temp_dir().join(format!("ferrolb-{id}.log"));
        std::fs::write(&path, config).expect("write config");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(wrapper)
            .args([&speaker_binary(), "standalone"])
            .args(["--config", path.to_str().unwrap(), "--metrics-bind", METRICS])
            .args(if extra.contains(&"--node-name") { &[][..] } else { &["--node-name", "node-a"][..] })
            .args(["--gratuitous-interval-ms", "100", "--poll-ms", "200"])
            .args(if extra.contains(&"--log-level") { &[][..] } else { &["--log-level", "debug"][..] })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start speaker");
        let s = Speaker { child, ns: ns.name.clone(), config: path, log };
        s.wait_until("ready", || s.http("/readyz").is_some_and(|b| b == "ready"));
        s
    }

    /// The body of a GET to the speaker's HTTP endpoint, whatever the status (`/readyz`
    /// says why it is not ready with a 503).
    pub fn http_body(&self, path: &str) -> String {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-s", "--max-time", "2"])
            .arg(format!("http://{METRICS}{path}")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The body of a GET to the speaker's HTTP endpoint, if it answered 200.
    pub fn http(&self, path: &str) -> Option<String> {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sf", "--max-time", "2"])
            .arg(format!("http://{METRICS}{path}")));
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The value of one sample, by metric name and a label-set substring (`""` for none).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.http("/metrics").expect("metrics endpoint");
        sample(&text, name, labels).unwrap_or(0.0)
    }

    /// Sends a signal (`"KILL"`, `"TERM"`, …) to the speaker process.
    pub fn signal(&self, sig: &str) {
        must(&["kill", &format!("-{sig}"), &self.child.id().to_string()]);
    }

    /// Waits for the process to exit (after a signal).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Rewrites the config file and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        std::fs::write(&self.config, config).expect("write config");
        must(&["kill", "-HUP", &self.child.id().to_string()]);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `cond` for up to 10 s; fails the test with the speaker's log otherwise.
    pub fn wait_until(&self, what: &str, cond: impl FnMut() -> bool) {
        if !crate::wait::poll_every(Duration::from_secs(10), Duration::from_millis(50), cond) {
            panic!("timed out waiting for {what}; speaker log:\n{}", self.log_text());
        }
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A child process killed and reaped on drop.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds a sample in the text exposition format.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && rest.contains(labels)).then(|| value.parse().ok())?
    })
}

/// A config with one pool covering the documentation ranges used here, one
/// L2Advertisement (optionally limited to `interfaces`) and one Service per address.
pub fn config(ips: &[&str], interfaces: &[&str]) -> String {
    let mut s = String::from(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec:\n  addresses: [198.51.100.10-198.51.100.250, '2001:db8:100::10-2001:db8:100::ffff']\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: lan, namespace: metallb-system}\nspec:\n  ipAddressPools: [lan]\n",
    );
    if !interfaces.is_empty() {
        s.push_str(&format!("  interfaces: [{}]\n", interfaces.join(", ")));
    }
    for (i, ip) in ips.iter().enumerate() {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc{i}\n  namespace: default\n  annotations: {{metallb.io/loadBalancerIPs: '{ip}'}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n"
        ));
    }
    s
}

/// The largest bucket bound of `ferrolb_cluster_heartbeat_interval_seconds` that saw an
/// observation (the longest interval between heartbeats, to the histogram's precision).
pub fn longest_heartbeat_interval(metrics: &str) -> Option<f64> {
    let mut last = (None, 0.0);
    for l in metrics.lines().filter(|l| l.starts_with("ferrolb_cluster_heartbeat_interval_seconds_bucket{le=")) {
        let le = l.split('"').nth(1)?;
        let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
        if count > last.1 {
            last = (Some(le.parse().unwrap_or(f64::INFINITY)), count);
        }
    }
    last.0
}

/// The configuration serving `ips`, which every node accepts locally.
pub fn serve(lan: &ClusterLan, ips: &[String]) -> String {
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    for ip in &refs {
        lan.accept_locally(ip);
    }
    config(&refs, &[])
}

/// A speaker on every node of `lan` serving `ips`, all settled.
pub fn cluster(lan: &ClusterLan, ips: &[String], extra: &[&str]) -> Vec<Speaker> {
    let cfg = serve(lan, ips);
    let speakers: Vec<Speaker> = (0..lan.nodes.len()).map(|i| lan.speaker(i, &cfg, extra)).collect();
    for s in &speakers {
        s.wait_until("three settled members", || {
            s.metric("ferrolb_cluster_members", "state=\"settled\"") == lan.nodes.len() as f64
        });
    }
    speakers
}

/// Documentation addresses 198.51.100.10 and up, `n` of them.
pub fn vips(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("198.51.100.{}", 10 + i)).collect()
}

/// Which node (index) each VIP is announced by, from the speakers' metrics; fails if an
/// address is announced by two or by none.
/// One scrape per speaker, so that a call is quick next to the hold-down windows timed here.
pub fn owners(speakers: &[Option<&Speaker>], ips: &[String]) -> BTreeMap<String, usize> {
    let scrapes: Vec<Option<String>> =
        speakers.iter().map(|s| s.map(|s| s.http("/metrics").expect("metrics endpoint"))).collect();
    let mut out = BTreeMap::new();
    for ip in ips {
        let by: Vec<usize> = scrapes
            .iter()
            .enumerate()
            .filter_map(|(i, text)| {
                let text = text.as_deref()?;
                (sample(text, "metallb_speaker_announced", &format!("ip=\"{ip}\"")) == Some(1.0)).then_some(i)
            })
            .collect();
        assert_eq!(by.len(), 1, "{ip} is announced by nodes {by:?}");
        out.insert(ip.clone(), by[0]);
    }
    out
}
