//! CPU starvation as on a busy node: weighted cgroups, pinned busy loops.

#[allow(unused_imports)]
use super::*;

/// A CPU cgroup made for a test, weighted like a Kubernetes pod's CPU request, removed
/// (its processes moved back to the root group) when dropped. cgroup v1's `cpu`
/// controller, or v2's `cpu.weight` where v1 is absent.
#[derive(Debug)]
pub struct CpuGroup {
    dir: PathBuf,
    root: PathBuf,
}

impl CpuGroup {
    /// A group with the CPU weight the kubelet gives a pod requesting `millicpu`:
    /// shares = milli × 1024 / 1000 (at least 2), or v2's weight from those shares.
    pub fn new(prefix: &str, millicpu: u64) -> CpuGroup {
        let shares = (millicpu * 1024 / 1000).max(2);
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        let (root, v2) = if v1.join("cpu.shares").exists() {
            (v1, false)
        } else {
            let v2 = PathBuf::from("/sys/fs/cgroup");
            assert!(
                std::fs::read_to_string(v2.join("cgroup.controllers")).is_ok_and(|c| c.contains("cpu")),
                "no cgroup v1 cpu controller at /sys/fs/cgroup/cpu and no v2 cpu controller at /sys/fs/cgroup"
            );
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
            (v2, true)
        };
        let dir = root.join(unique(prefix));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let group = CpuGroup { dir, root };
        if v2 {
            // The kubelet's conversion (kubernetes/kubernetes pkg/kubelet/cm/cgroup_manager_linux.go).
            let weight = 1 + ((shares - 2) * 9999) / 262142;
            group.write("cpu.weight", &weight.to_string());
        } else {
            group.write("cpu.shares", &shares.to_string());
        }
        group
    }

    fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    }

    /// Moves process `pid`, every thread of it, into the group.
    pub fn add(&self, pid: u32) {
        self.write("cgroup.procs", &pid.to_string());
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `n` busy loops (`sh -c 'while :; do :; done'`), killed when dropped.
pub fn busy_loops(n: usize) -> Vec<KillOnDrop> {
    (0..n)
        .map(|_| {
            KillOnDrop(
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("busy loop"),
            )
        })
        .collect()
}

/// User + system CPU seconds of a process so far.
pub fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    let after_comm = stat.rsplit_once(')').expect("stat format").1;
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
}

/// One speaker's CPU saturated, as on a busy node: pinned to CPU 0 in a cgroup weighted
/// like a pod requesting `request` millicpu, beside four busy loops in a cgroup weighted
/// like a pod requesting 2 CPUs, also pinned there. `others` (the other nodes' speakers)
/// are pinned to the remaining CPUs, as if on machines of their own. Undone when dropped.
#[derive(Debug)]
pub struct Starvation {
    _hogs: Vec<KillOnDrop>,
    _groups: [CpuGroup; 2],
}

impl Starvation {
    pub fn start(starved: u32, others: &[u32], request: u64) -> Starvation {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(cpus >= 2, "starving one speaker needs two CPUs: one starved, one for the other nodes");
        let rest = format!("1-{}", cpus - 1);
        must(&["taskset", "-a", "-cp", "0", &starved.to_string()]);
        for pid in others {
            must(&["taskset", "-a", "-cp", &rest, &pid.to_string()]);
        }
        let speaker = CpuGroup::new("ferrolb-speaker", request);
        speaker.add(starved);
        let hog = CpuGroup::new("ferrolb-hog", 2000);
        let hogs = busy_loops(4);
        for h in &hogs {
            must(&["taskset", "-cp", "0", &h.0.id().to_string()]);
            hog.add(h.0.id());
        }
        Starvation { _hogs: hogs, _groups: [speaker, hog] }
    }
}
