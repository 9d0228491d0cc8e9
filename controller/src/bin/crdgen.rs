//! Prints the CustomResourceDefinitions generated from FerroLB's Rust types, one YAML
//! document each: `cargo run -p ferrolb-controller --bin crdgen > manifests/crds/crds.yaml`.

use ferrolb_controller::crds;

fn main() -> anyhow::Result<()> {
    print!("{}", crds()?);
    Ok(())
}
