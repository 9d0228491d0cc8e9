//! The speaker's command line as users and the image meet it. (Being an integration test,
//! this also makes `cargo test` build the speaker binary that the end-to-end tests run.)

use std::process::Command;

#[test]
fn version_and_help_name_the_speaker() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb-speaker")).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("ferrolb-speaker {}", env!("CARGO_PKG_VERSION")));
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb-speaker")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("run") && text.contains("standalone"), "{text}");
}
