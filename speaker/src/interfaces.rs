//! Which interfaces carry announcements, as MetalLB chooses them
//! (`internal/layer2/announcer.go` `updateInterfaces`, MetalLB 7938d3f89): up, Ethernet,
//! broadcast-capable, not loopback, not NOARP, not enslaved to a bridge or bond (the
//! master answers: a bond's backup port answering with the bond's MAC moves the node's
//! MAC on the switch), and not named by an exclusion pattern (MetalLB's
//! `metallb-excludel2` ConfigMap; its shipped list by default). Interfaces an
//! L2Advertisement names are used whatever the patterns say.
//!
//! Read from sysfs (no syscalls needed); [`select`] is the pure decision.

use std::fs;
use std::path::Path;

use ferrolb_wire::MacAddr;
use regex::Regex;

const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_NOARP: u32 = 0x80;
const ARPHRD_ETHER: u32 = 1;

/// MetalLB's `announcedInterfacesToExclude` as its manifests ship it
/// (`config/manifests/metallb-native.yaml`, ConfigMap `metallb-excludel2`): container,
/// CNI and tunnel interfaces a LAN never reaches.
pub const METALLB_EXCLUDED: &[&str] = &[
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo$",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    "^nodelocaldns.*",
    "^lxc.*",
];

/// Where MetalLB's speaker reads the `metallb-excludel2` ConfigMap (mounted there).
pub const EXCLUDEL2_PATH: &str = "/etc/metallb/excludel2.yaml";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: i32,
    pub mac: MacAddr,
}

/// Interface names never announced on unless an L2Advertisement names them.
#[derive(Debug, Clone)]
pub struct Exclusions {
    patterns: Vec<String>,
    regex: Option<Regex>,
}

impl Default for Exclusions {
    fn default() -> Self {
        Exclusions::new(METALLB_EXCLUDED.iter().map(|s| s.to_string()).collect()).expect("built-in patterns are valid")
    }
}

impl PartialEq for Exclusions {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Exclusions {
    /// Patterns joined as MetalLB joins them (`(a)|(b)`, Go's RE2 syntax, which the
    /// `regex` crate shares). An empty list excludes nothing.
    pub fn new(patterns: Vec<String>) -> Result<Exclusions, regex::Error> {
        let regex = match patterns.is_empty() {
            true => None,
            false => Some(Regex::new(&format!("({})", patterns.join(")|(")))?),
        };
        Ok(Exclusions { patterns, regex })
    }

    /// The `excludel2.yaml` key of MetalLB's ConfigMap:
    /// `announcedInterfacesToExclude: [...]`.
    pub fn from_excludel2(text: &str) -> Result<Exclusions, String> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct File {
            #[serde(default)]
            announced_interfaces_to_exclude: Vec<String>,
        }
        let file: File = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        Exclusions::new(file.announced_interfaces_to_exclude).map_err(|e| e.to_string())
    }

    /// The file at `path` if there is one (MetalLB's ConfigMap, mounted), else MetalLB's
    /// shipped list. A file that cannot be read or parsed is an error: silently falling
    /// back could announce on interfaces the operator excluded.
    pub fn load(path: &Path) -> Result<Exclusions, String> {
        match fs::read_to_string(path) {
            Ok(text) => Exclusions::from_excludel2(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Exclusions::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn excludes(&self, name: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(name))
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// What sysfs says about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: i32,
    pub mac: Option<MacAddr>,
    pub flags: u32,
    /// `ARPHRD_*`.
    pub kind: u32,
    /// A bridge port or bond slave (`/sys/class/net/NAME/master` exists).
    pub enslaved: bool,
    /// The devices this one is stacked on (`lower_*`): a macvlan's or a VLAN's parent.
    pub lower: Vec<String>,
    /// An 802.1Q sub-interface (`/proc/net/vlan/NAME`): a segment of its own.
    pub vlan: bool,
}

impl Link {
    /// Could answer ARP at all: up, Ethernet, ARP-capable, with a MAC.
    fn can_answer(&self) -> Option<Interface> {
        (self.flags & IFF_UP != 0 && self.kind == ARPHRD_ETHER && self.flags & IFF_NOARP == 0).then_some(())?;
        Some(Interface { name: self.name.clone(), index: self.index, mac: self.mac? })
    }
}

/// Why a link is not announced on by default, or `None` if it is.
pub fn skipped_because(link: &Link, exclude: &Exclusions) -> Option<&'static str> {
    if link.flags & IFF_LOOPBACK != 0 || link.flags & IFF_BROADCAST == 0 {
        Some("loopback or not broadcast")
    } else if link.enslaved {
        Some("enslaved to a bridge or bond")
    } else if exclude.excludes(&link.name) {
        Some("excluded by name")
    } else if link.can_answer().is_none() {
        Some("down, not Ethernet, or NOARP")
    } else {
        None
    }
}

/// The interfaces announced on by default (no `interfaces` in the L2Advertisement), by
/// name. A macvlan (or ipvlan) on an interface that is announced on is skipped: it is
/// the same segment, and answering from both gives a client two MACs for one address.
/// A VLAN sub-interface is a segment of its own and is kept.
pub fn select(links: &[Link], exclude: &Exclusions) -> Vec<Interface> {
    let base: Vec<&Link> = links.iter().filter(|l| skipped_because(l, exclude).is_none()).collect();
    let on_selected = |l: &Link| !l.vlan && l.lower.iter().any(|lower| base.iter().any(|b| &b.name == lower));
    let mut out: Vec<Interface> = base.iter().filter(|l| !on_selected(l)).filter_map(|l| l.can_answer()).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// An interface an L2Advertisement names: used if it can answer at all, whatever the
/// exclusion patterns or a master say (the operator chose it).
pub fn named(links: &[Link], name: &str) -> Option<Interface> {
    links.iter().find(|l| l.name == name).and_then(Link::can_answer)
}

fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok().map(|s| s.trim().to_string())
}

fn read_hex(dir: &Path, file: &str) -> Option<u32> {
    u32::from_str_radix(read(dir, file)?.trim_start_matches("0x"), 16).ok()
}

/// Every link of this network namespace.
pub fn links() -> Vec<Link> {
    let root = Path::new("/sys/class/net");
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let dir = root.join(&name);
            Some(Link {
                index: read(&dir, "ifindex")?.parse().ok()?,
                mac: read(&dir, "address").and_then(|m| m.parse().ok()),
                flags: read_hex(&dir, "flags")?,
                kind: read(&dir, "type")?.parse().ok()?,
                enslaved: dir.join("master").exists(),
                lower: fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_prefix("lower_").map(String::from))
                    .collect(),
                vlan: Path::new("/proc/net/vlan").join(&name).exists(),
                name,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, flags: u32) -> Link {
        Link {
            name: name.into(),
            index: 1,
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            flags,
            kind: ARPHRD_ETHER,
            enslaved: false,
            lower: Vec::new(),
            vlan: false,
        }
    }

    const UP: u32 = IFF_UP | IFF_BROADCAST;

    /// A K3s node with flannel: only the uplink and the bond are announced on.
    #[test]
    fn a_real_nodes_interfaces() {
        let mut slave = link("eno1", UP);
        slave.enslaved = true;
        let mut links = vec![
            link("eth0", UP),
            link("bond0", UP),
            slave,
            link("cni0", UP),
            link("flannel.1", UP),
            link("veth1a2b3c", UP),
            link("kube-ipvs0", UP),
            link("lo", UP | IFF_LOOPBACK),
            link("wg0", IFF_UP | IFF_NOARP),
            link("eth1", IFF_BROADCAST),
            link("docker0", UP),
            link("nodelocaldns", UP),
            link("cali12345", UP),
        ];
        links.push(Link { kind: 772, ..link("ipip0", UP) });
        // A macvlan on the uplink: the same segment. A VLAN on it: a segment of its own.
        links.push(Link { lower: vec!["eth0".into()], ..link("mv0", UP) });
        links.push(Link { lower: vec!["eth0".into()], vlan: true, ..link("eth0.100", UP) });
        let names: Vec<String> = select(&links, &Exclusions::default()).into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["bond0", "eth0", "eth0.100"]);
        assert_eq!(skipped_because(&links[2], &Exclusions::default()), Some("enslaved to a bridge or bond"));
        assert_eq!(skipped_because(&links[3], &Exclusions::default()), Some("excluded by name"));
        // Named by an L2Advertisement: used despite the patterns and the master.
        assert_eq!(named(&links, "cni0").map(|i| i.name).as_deref(), Some("cni0"));
        assert_eq!(named(&links, "eno1").map(|i| i.name).as_deref(), Some("eno1"));
        assert_eq!(named(&links, "wg0"), None, "NOARP cannot answer ARP");
        assert_eq!(named(&links, "eth1"), None, "down");
    }

    #[test]
    fn metallbs_configmap_replaces_the_defaults() {
        let e = Exclusions::from_excludel2("announcedInterfacesToExclude: [\"^eth1$\", \"^storage.*\"]\n").unwrap();
        assert!(e.excludes("eth1") && e.excludes("storage0"));
        assert!(!e.excludes("eth10") && !e.excludes("veth0"), "only the file's patterns count");
        let none = Exclusions::from_excludel2("announcedInterfacesToExclude: []\n").unwrap();
        assert!(!none.excludes("veth0"));
        assert!(Exclusions::from_excludel2("announcedInterfacesToExclude: [\"(\"]\n").is_err());
        let missing = Exclusions::load(Path::new("/nonexistent/excludel2.yaml")).unwrap();
        assert_eq!(missing, Exclusions::default());
    }
}
