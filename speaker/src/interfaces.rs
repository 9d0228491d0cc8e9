//! Which interfaces can carry announcements, read from sysfs (no syscalls needed).

use std::fs;
use std::path::Path;

use ferrolb_proto::wire::MacAddr;

const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_LOOPBACK: u32 = 0x8;
const ARPHRD_ETHER: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: i32,
    pub mac: MacAddr,
}

fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok().map(|s| s.trim().to_string())
}

fn read_hex(dir: &Path, file: &str) -> Option<u32> {
    u32::from_str_radix(read(dir, file)?.trim_start_matches("0x"), 16).ok()
}

/// One interface by name, if it is an Ethernet interface that is up.
pub fn by_name(name: &str) -> Option<Interface> {
    let dir = Path::new("/sys/class/net").join(name);
    let flags = read_hex(&dir, "flags")?;
    let kind: u32 = read(&dir, "type")?.parse().ok()?;
    if flags & IFF_UP == 0 || kind != ARPHRD_ETHER {
        return None;
    }
    Some(Interface {
        name: name.to_string(),
        index: read(&dir, "ifindex")?.parse().ok()?,
        mac: read(&dir, "address")?.parse().ok()?,
    })
}

/// Every up, broadcast-capable, non-loopback Ethernet interface, by name.
pub fn eligible() -> Vec<Interface> {
    let Ok(entries) = fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<Interface> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| {
            let flags = read_hex(&Path::new("/sys/class/net").join(name), "flags").unwrap_or(0);
            flags & IFF_BROADCAST != 0 && flags & IFF_LOOPBACK == 0
        })
        .filter_map(|name| by_name(&name))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
