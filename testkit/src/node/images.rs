//! The images a real cluster runs, built here with buildah (nothing can be pulled): FerroLB's own by `scripts/image.sh`, the pause and httpd images from busybox.

#[allow(unused_imports)]
use super::*;

/// Where this machine keeps things it builds once for every run (images).
pub(super) fn cache_dir() -> PathBuf {
    let dir = crate::root().join("target/real-cluster");
    std::fs::create_dir_all(&dir).expect("target/real-cluster");
    dir
}

/// FerroLB's image for this machine's architecture, built once per test run by
/// `scripts/image.sh` (as users build it); the path of its OCI archive.
pub fn ferrolb_image(arch: &str) -> PathBuf {
    static AMD64: OnceLock<PathBuf> = OnceLock::new();
    static ARM64: OnceLock<PathBuf> = OnceLock::new();
    let cell = match arch {
        "amd64" => &AMD64,
        "arm64" => &ARM64,
        other => panic!("no image architecture {other}"),
    };
    cell.get_or_init(|| {
        let out = cache_dir().join("image");
        let started = Instant::now();
        let status = Command::new("bash")
            .arg(crate::root().join("scripts/image.sh"))
            .arg(&out)
            .arg(arch)
            .status()
            .expect("run scripts/image.sh");
        assert!(status.success(), "scripts/image.sh {} {arch} failed", out.display());
        eprintln!("scripts/image.sh {arch}: {:.0} s", started.elapsed().as_secs_f64());
        out.join(format!("ferrolb-{arch}.oci.tar"))
    })
    .clone()
}

/// Runs `buildah` on a private store under `store`.
pub(super) fn buildah(store: &Path, args: &[&str]) -> String {
    let mut all: Vec<String> = vec![
        "buildah".into(),
        "--root".into(),
        store.join("root").display().to_string(),
        "--runroot".into(),
        store.join("run").display().to_string(),
        "--storage-driver".into(),
        "vfs".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    must(&refs).trim().to_string()
}

/// An image of `rootfs` (a folder) with `entrypoint` (JSON), as an OCI archive named `name`.
pub(super) fn image_archive(rootfs: &Path, entrypoint: &str, name: &str, out: &Path) {
    let store = std::env::temp_dir().join(unique("buildah"));
    let ctr = buildah(&store, &["from", "scratch"]);
    buildah(&store, &["copy", &ctr, rootfs.to_str().unwrap(), "/"]);
    buildah(&store, &["config", "--entrypoint", entrypoint, "--os", "linux", "--arch", "amd64", &ctr]);
    let image = buildah(&store, &["commit", "--format", "oci", "--rm", &ctr, "test-image"]);
    let _ = std::fs::remove_file(out);
    buildah(&store, &["push", &image, &format!("oci-archive:{}:{name}", out.display())]);
    let _ = Command::new("buildah")
        .args(["--root", &store.join("root").display().to_string()])
        .args(["--runroot", &store.join("run").display().to_string(), "--storage-driver", "vfs", "rm", "--all"])
        .output();
    let _ = std::fs::remove_dir_all(&store);
}

/// The pause and httpd images (built once per test run): their OCI archives.
pub fn test_images() -> Vec<PathBuf> {
    static IMAGES: OnceLock<Vec<PathBuf>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            let dir = cache_dir().join("test-images");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            // pause: sleeps until a signal, reaps nothing (no shared PID namespace here).
            let pause_root = dir.join("pause-root");
            std::fs::create_dir_all(&pause_root).unwrap();
            std::fs::write(
                dir.join("pause.c"),
                "#include <signal.h>\n#include <unistd.h>\n#include <stdlib.h>\nstatic void bye(int s){(void)s;_exit(0);}\nint main(void){signal(SIGINT,bye);signal(SIGTERM,bye);for(;;)pause();}\n",
            )
            .unwrap();
            must(&[
                "gcc",
                "-static",
                "-O2",
                "-o",
                pause_root.join("pause").to_str().unwrap(),
                dir.join("pause.c").to_str().unwrap(),
            ]);
            let pause = dir.join("pause.oci.tar");
            image_archive(&pause_root, r#"["/pause"]"#, PAUSE_IMAGE, &pause);
            // httpd: busybox-static, the page names the Pod (its hostname).
            let httpd_root = dir.join("httpd-root");
            std::fs::create_dir_all(httpd_root.join("bin")).unwrap();
            std::fs::create_dir_all(httpd_root.join("www")).unwrap();
            let busybox = must(&["sh", "-c", "command -v busybox"]);
            std::fs::copy(busybox.trim(), httpd_root.join("bin/busybox")).unwrap();
            let httpd = dir.join("httpd.oci.tar");
            image_archive(
                &httpd_root,
                r#"["/bin/busybox", "sh", "-c", "/bin/busybox hostname > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www"]"#,
                HTTPD_IMAGE,
                &httpd,
            );
            vec![pause, httpd]
        })
        .clone()
}
