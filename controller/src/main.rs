//! The FerroLB controller. IP allocation from pools is tracked in its own issue; until
//! then this binary only states that, so nobody mistakes it for a working controller.

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "ferrolb-controller: IP allocation is not implemented yet; the standalone speaker announces requested IPs"
    )
}
