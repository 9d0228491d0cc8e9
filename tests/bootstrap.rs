//! The node bootstrap scripts (manifests/bootstrap/) under bats with stubbed system
//! commands, and every shell script of the repository under shellcheck.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn check(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (apt-get install bats shellcheck)"));
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bootstrap_scripts_pass_their_bats_tests() {
    check(Command::new("bats").arg(root().join("manifests/bootstrap/test")));
}

#[test]
fn every_shell_script_is_shellcheck_clean() {
    let mut scripts = vec![root().join(".ci/run")];
    for dir in ["scripts", "manifests/bootstrap"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sh") {
                scripts.push(path);
            }
        }
    }
    assert!(scripts.len() >= 8, "{scripts:?}");
    // -x follows `source`d files; run from the scripts' folder so relative sources resolve.
    check(Command::new("shellcheck").arg("-x").args(&scripts).current_dir(root().join("manifests/bootstrap")));
}
