//! FerroLB's image as `scripts/image.sh` builds it (both architectures, Debian's tools
//! only), checked against the Dockerfile users build with buildx, and the arm64 build
//! under QEMU user mode: what of it runs there, and the pure crates' tests.
//!
//! QEMU user mode translates ordinary syscalls but not the packet-socket options the
//! speaker sets up (`setsockopt(SOL_PACKET, ...)` fails with ENOPROTOOPT, os error 92), so
//! an arm64 speaker under QEMU loads its configuration, serves /metrics and /readyz (not
//! Ready, saying why) and stops cleanly, but answers no ARP: that part is tested on real
//! arm64 hardware only. The allocator, the plan, membership and ownership, and the wire
//! formats are plain code and run under QEMU in full.
//!
//! Needs: buildah, binutils, qemu-user-static, Debian's rustc-web/cargo-web 1.96 with
//! libstd-rust-web-dev:arm64, gcc-aarch64-linux-gnu (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use ferrolb_testkit::netns::{Netns, must, unique, veth};
use ferrolb_testkit::node::ferrolb_image;
use ferrolb_testkit::root;

/// Builds are the machine's whole CPU: one at a time.
static ONE_BUILD_AT_A_TIME: Mutex<()> = Mutex::new(());

/// An OCI archive unpacked: its config and its (single-layer) root.
struct Unpacked {
    dir: PathBuf,
    config: serde_json::Value,
    ref_name: String,
    root: PathBuf,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unpack(archive: &Path) -> Unpacked {
    let dir = std::env::temp_dir().join(unique("ferrolb-image"));
    std::fs::create_dir_all(dir.join("root")).unwrap();
    must(&["tar", "-xf", archive.to_str().unwrap(), "-C", dir.to_str().unwrap()]);
    let blob = |digest: &str| dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let json = |p: PathBuf| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let index = json(dir.join("index.json"));
    let ref_name =
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap_or_default();
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let config = json(blob(manifest["config"]["digest"].as_str().unwrap()));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let layer = blob(layers[0]["digest"].as_str().unwrap());
    must(&["tar", "-xf", layer.to_str().unwrap(), "-C", dir.join("root").to_str().unwrap()]);
    Unpacked { root: dir.join("root"), dir, config, ref_name: ref_name.to_string() }
}

/// The Dockerfile's last stage as JSON-ish facts: ENTRYPOINT and CMD (JSON arrays) and the
/// files its COPY puts in the root.
fn dockerfile_layout() -> (serde_json::Value, serde_json::Value, String, Vec<String>) {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let last = text.rsplit("\nFROM ").next().unwrap();
    let line = |prefix: &str| last.lines().find_map(|l| l.strip_prefix(prefix)).map(str::to_string);
    let entrypoint: serde_json::Value = serde_json::from_str(&line("ENTRYPOINT ").expect("ENTRYPOINT")).unwrap();
    let cmd: serde_json::Value = serde_json::from_str(&line("CMD ").expect("CMD")).unwrap();
    let user = line("USER ").unwrap_or_default();
    let copy = line("COPY --from=build ").expect("COPY --from=build");
    let words: Vec<&str> = copy.split_whitespace().collect();
    let (dest, sources) = words.split_last().unwrap();
    let files =
        sources.iter().map(|s| format!("{}/{}", dest.trim_end_matches('/'), s.rsplit('/').next().unwrap())).collect();
    (entrypoint, cmd, user, files)
}

/// Every regular file in a folder, relative to it.
fn files(root: &Path) -> Vec<String> {
    let out = must(&["find", root.to_str().unwrap(), "-type", "f"]);
    let mut v: Vec<String> = out.lines().map(|l| l.strip_prefix(root.to_str().unwrap()).unwrap().to_string()).collect();
    v.sort();
    v
}

#[test]
fn image_archives_for_amd64_and_arm64_have_the_dockerfile_layout_and_nothing_else() {
    let _one = ONE_BUILD_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    ferrolb_testkit::netns::require_root();
    let (entrypoint, cmd, user, binaries) = dockerfile_layout();
    let kustomization = std::fs::read_to_string(root().join("manifests/kustomization.yaml")).unwrap();
    let tag = kustomization.lines().find_map(|l| l.trim().strip_prefix("newTag: ")).unwrap().to_string();
    assert_eq!(tag, env!("CARGO_PKG_VERSION"), "the manifests deploy this version's image");
    for arch in ["amd64", "arm64"] {
        let archive = ferrolb_image(arch);
        let image = unpack(&archive);
        assert_eq!(image.ref_name, format!("ghcr.io/ferrolb/ferrolb:{tag}"));
        assert_eq!(image.config["architecture"], arch);
        assert_eq!(image.config["os"], "linux");
        assert_eq!(image.config["config"]["Entrypoint"], entrypoint, "{arch}: {}", image.config);
        assert_eq!(image.config["config"]["Cmd"], cmd, "{arch}: {}", image.config);
        assert_eq!(image.config["config"]["User"].as_str().unwrap_or_default(), user, "{arch}: {}", image.config);
        // The binaries, the loader and the libraries they name: nothing else.
        let all = files(&image.root);
        for b in &binaries {
            assert!(all.contains(b), "{arch}: {b} missing from {all:?}");
        }
        let extra: Vec<&String> =
            all.iter().filter(|f| !binaries.contains(f) && !f.rsplit('/').next().unwrap().contains(".so")).collect();
        assert!(extra.is_empty(), "{arch}: files that are neither a binary nor a library: {extra:?}");
        // Every library each binary names is in the image itself (QEMU's -L below would
        // fall back to the host's files), and the loader where the binary asks for it.
        let triplet = if arch == "amd64" { "x86_64-linux-gnu" } else { "aarch64-linux-gnu" };
        for b in &binaries {
            let path = image.root.join(b.trim_start_matches('/'));
            let program = must(&["readelf", "-l", path.to_str().unwrap()]);
            let interp =
                program.lines().find_map(|l| l.split("program interpreter: ").nth(1)?.strip_suffix(']')).unwrap();
            assert!(image.root.join(interp.trim_start_matches('/')).exists(), "{arch}: no {interp}");
            let dynamic = must(&["readelf", "-d", path.to_str().unwrap()]);
            for lib in dynamic.lines().filter_map(|l| l.split("Shared library: [").nth(1)?.strip_suffix(']')) {
                // The loader answers for its own name.
                let here = interp.ends_with(&format!("/{lib}"))
                    || image.root.join("lib").join(triplet).join(lib).exists()
                    || image.root.join("lib").join(lib).exists();
                assert!(here, "{arch}: {b} needs {lib}, not in the image");
            }
        }
        // Each binary starts with the image's own root as its library root.
        for b in &binaries {
            let path = image.root.join(b.trim_start_matches('/'));
            let out = match arch {
                "amd64" => Command::new("chroot").arg(&image.root).args([b.as_str(), "--version"]).output().unwrap(),
                _ => Command::new("qemu-aarch64-static")
                    .arg("-L")
                    .arg(&image.root)
                    .arg(&path)
                    .arg("--version")
                    .output()
                    .unwrap(),
            };
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{arch} {b} --version: {}", String::from_utf8_lossy(&out.stderr));
            let name = b.rsplit('/').next().unwrap();
            assert_eq!(text.trim(), format!("{name} {tag}"), "{arch}");
        }
        let size = std::fs::metadata(&archive).unwrap().len();
        let unpacked: u64 =
            all.iter().map(|f| std::fs::metadata(image.root.join(f.trim_start_matches('/'))).unwrap().len()).sum();
        eprintln!(
            "FIGURES image linux/{arch}: archive {:.1} MiB, root {:.1} MiB ({} files)",
            size as f64 / 1048576.0,
            unpacked as f64 / 1048576.0,
            all.len()
        );
    }
}

/// The arm64 speaker under QEMU user mode: configuration, HTTP, readiness and a clean stop
/// run; packet sockets do not (and the speaker says so, not Ready). The arm64 controller's
/// `plan` gives byte for byte the amd64 one's answer.
#[test]
fn arm64_binaries_under_qemu_plan_alike_and_the_speaker_says_why_it_cannot_answer() {
    let _one = ONE_BUILD_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let image = unpack(&ferrolb_image("arm64"));
    let fixture = root().join("tests/fixtures/users/legacy-configmap-kubeadm.yaml");
    let plan = |cmd: &mut Command| {
        let out = cmd.args(["plan", "--config"]).arg(&fixture).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let arm =
        plan(Command::new("qemu-aarch64-static").arg("-L").arg(&image.root).arg(image.root.join("ferrolb-controller")));
    let native = plan(&mut Command::new(ferrolb_testkit::binary("ferrolb-controller")));
    assert!(!native.is_empty());
    assert_eq!(String::from_utf8_lossy(&arm), String::from_utf8_lossy(&native));

    let host = Netns::new("fq");
    let peer = Netns::new("fp");
    let (ifname, _) = veth(&host, &peer);
    host.ip(&["link", "set", &ifname, "up"]);
    host.ip(&["addr", "add", "198.51.100.2/24", "dev", &ifname]);
    let config =
        ferrolb_testkit::netns::TempFile::new("qemu", &ferrolb_testkit::netns::config(&["198.51.100.10"], &[]));
    let log = std::env::temp_dir().join(format!("{}.log", unique("qemu-speaker")));
    let mut speaker = ferrolb_testkit::netns::KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &host.name, "qemu-aarch64-static", "-L"])
            .arg(&image.root)
            .arg(image.root.join("ferrolb-speaker"))
            .args(["standalone", "--node-name", "pi", "--metrics-bind", "127.0.0.1:7472", "--config", config.path()])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let get = |path: &str| {
        let out = host.exec(&[
            "curl",
            "-s",
            "--max-time",
            "2",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:7472{path}"),
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ok = ferrolb_testkit::apiserver::poll(Duration::from_secs(20), || get("/readyz").ends_with("\n503"));
    let readyz = get("/readyz");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ok, "/readyz under QEMU: {readyz:?}\n{text}");
    assert!(text.contains("cannot open packet sockets") && text.contains("os error 92"), "{text}");
    assert!(get("/metrics").contains("ferrolb_config_last_reload_successful 1"), "{}", get("/metrics"));
    must(&["kill", "-TERM", &speaker.0.id().to_string()]);
    let stopped = ferrolb_testkit::apiserver::poll(Duration::from_secs(10), || speaker.0.try_wait().unwrap().is_some());
    assert!(stopped, "the arm64 speaker did not stop on SIGTERM");
    assert!(speaker.0.wait().unwrap().success());
    let _ = std::fs::remove_file(log);
}

/// The pure crates' tests, cross-built for arm64 with Debian's rustc-web and run under
/// `qemu-aarch64-static`: wire formats, the model (config, allocator, ownership), the controller's allocator and
/// reconciler, the speaker's membership simulation, ownership, responder and BPF programs.
#[test]
fn arm64_pure_crates_tests_pass_under_qemu() {
    let _one = ONE_BUILD_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let out = Command::new("/usr/bin/cargo")
        .current_dir(root())
        .env("RUSTC", "/usr/bin/rustc")
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc")
        .env("CC_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-gcc")
        .env("AR_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-ar")
        // Debian's arm64 glibc (libc6:arm64, multiarch) as the library root: with the
        // cross-compiler's copy (`-L /usr/aarch64-linux-gnu`, libc6-arm64-cross 2.36-8cross1)
        // the first pthread_create hangs under QEMU user mode here, and every test with it.
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER", "qemu-aarch64-static -L /")
        // The release profile shares the dependencies scripts/image.sh built for arm64.
        .args(["test", "--release", "--locked", "--target", "aarch64-unknown-linux-gnu", "--target-dir"])
        .arg(root().join("target/debian-rustc"))
        .args([
            "-p",
            "ferrolb-wire",
            "-p",
            "ferrolb-model",
            "-p",
            "ferrolb-controller",
            "-p",
            "ferrolb-speaker",
            "--lib",
        ])
        .args(["--", "--test-threads", "2"])
        .output()
        .expect("Debian's cargo (cargo-web) at /usr/bin/cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "arm64 tests under QEMU failed:\n{stdout}\n{stderr}");
    let summaries: Vec<&str> = stdout.lines().filter(|l| l.starts_with("test result:")).collect();
    let passed: usize =
        summaries.iter().filter_map(|l| l.split("ok. ").nth(1)?.split(' ').next()?.parse::<usize>().ok()).sum();
    assert!(summaries.len() >= 3 && passed > 100, "{summaries:?}");
    let runs: Vec<&str> = stderr.lines().filter(|l| l.contains("Running")).collect();
    assert!(!runs.is_empty() && runs.iter().all(|l| l.contains("aarch64-unknown-linux-gnu")), "{runs:?}");
    eprintln!(
        "FIGURES arm64 under QEMU: {passed} tests passed in {:.0} s (build included)",
        started.elapsed().as_secs_f64()
    );
}
