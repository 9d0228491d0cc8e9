//! One node of a real cluster: a namespace of the LAN with its own containerd, kubelet and kube-proxy, and its cgroup root.

#[allow(unused_imports)]
use super::*;

/// One node: a network namespace of the LAN with its own containerd, kubelet and
/// kube-proxy.
#[derive(Debug)]
pub struct Node {
    pub index: usize,
    pub name: String,
    /// The network namespace's name (`/var/run/netns/NAME`).
    pub netns: String,
    pub dir: PathBuf,
    /// The node's cgroup root (`/NAME` in every v1 hierarchy).
    pub cgroup: String,
    pub(super) containerd: Option<KillOnDrop>,
    pub(super) kubelet: Option<KillOnDrop>,
    pub(super) kube_proxy: Option<KillOnDrop>,
}

impl Node {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// `ctr` against this node's containerd, in the Kubernetes namespace.
    pub fn ctr(&self, args: &[&str]) -> String {
        let sock = self.socket();
        let mut all = vec!["ctr", "-a", sock.to_str().unwrap(), "-n", "k8s.io"];
        all.extend_from_slice(args);
        must(&all)
    }

    /// Imports an OCI archive into this node's containerd.
    pub fn import(&self, archive: &Path) {
        self.ctr(&["images", "import", "--all-platforms", archive.to_str().unwrap()]);
    }

    /// A command entered into the node's network namespace only (`nsenter --net`).
    pub(super) fn enter(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", self.netns));
        cmd
    }

    /// Every process in the node's cgroup root (its Pods' containers).
    pub(super) fn pod_pids(&self) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        let needle = format!(":/{}/", self.cgroup);
        let Ok(dir) = std::fs::read_dir("/proc") else { return out };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if cg.lines().any(|l| l.contains(&needle) || l.ends_with(&format!(":/{}", self.cgroup))) {
                out.insert(pid);
            }
        }
        out
    }

    /// containerd's shims for this node (they name its socket on their command line).
    pub(super) fn shim_pids(&self) -> BTreeSet<u32> {
        let sock = self.socket().display().to_string();
        let mut out = BTreeSet::new();
        let Ok(dir) = std::fs::read_dir("/proc") else { return out };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("containerd-shim") && cmdline.contains(&sock) {
                out.insert(pid);
            }
        }
        out
    }

    /// The node dies as a power cut kills it: kubelet, kube-proxy, containerd, the shims
    /// and every process of its Pods, SIGKILL, at once. Its namespace and link stay (the
    /// LAN sees a silent host).
    pub fn kill(&mut self) {
        for p in [self.kubelet.take(), self.kube_proxy.take(), self.containerd.take()].into_iter().flatten() {
            let _ = Command::new("kill").args(["-9", &p.0.id().to_string()]).status();
            drop(p);
        }
        for _ in 0..3 {
            let pids: Vec<u32> = self.pod_pids().into_iter().chain(self.shim_pids()).collect();
            for pid in &pids {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            if pids.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn alive(&self) -> bool {
        self.kubelet.is_some()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        // Mounts the kubelet and containerd made under the node's folder (secrets, shm,
        // rootfs snapshots), deepest first.
        let prefix = self.dir.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&prefix))
            .map(String::from)
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", &p]).status();
        }
        remove_cgroup(&self.cgroup);
    }
}

/// A v1 cgroup root `/NAME` in every hierarchy, as a kubelet with `cgroupRoot` expects it.
pub(super) fn make_cgroup(name: &str) {
    for entry in std::fs::read_dir("/sys/fs/cgroup").expect("/sys/fs/cgroup").flatten() {
        let h = entry.path();
        if !h.join("cgroup.procs").exists() {
            continue;
        }
        let dir = h.join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cgroup {}: {e}", dir.display()));
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(h.join(f)) {
                std::fs::write(dir.join(f), v.trim()).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()));
            }
        }
    }
}

pub(super) fn remove_cgroup(name: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for entry in hierarchies.flatten() {
        let dir = entry.path().join(name);
        if !dir.is_dir() {
            continue;
        }
        // Deepest first: only empty cgroups can go.
        let out = Command::new("find").arg(&dir).args(["-depth", "-type", "d"]).output();
        if let Ok(out) = out {
            for d in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}
