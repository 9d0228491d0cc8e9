//! A real Prometheus server (Debian's `prometheus`) scrapes the speaker in its namespace;
//! the scraped series are checked through Prometheus' HTTP API, and `promtool` checks the
//! exposition format.

mod netns;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netns::{KillOnDrop, Lan, SERVER_MAC, Speaker, config};

const VIP4: &str = "198.51.100.10";
const VIP6: &str = "2001:db8:100::10";

#[test]
fn promtool_accepts_the_exposition() {
    let lan = Lan::new();
    let speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &[]);
    assert_eq!(lan.arping(VIP4, 1).as_deref(), Some(SERVER_MAC));
    let text = speaker.http("/metrics").expect("metrics");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}\n---\n{text}");
}

#[test]
fn prometheus_scrapes_the_speaker() {
    let lan = Lan::new();
    let speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &[]);
    for _ in 0..3 {
        assert_eq!(lan.arping(VIP4, 1).as_deref(), Some(SERVER_MAC));
    }
    let dir = std::env::temp_dir().join(netns::unique("ferrolb-prom"));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: ferrolb-speaker\n  static_configs:\n  - targets: ['{}']\n", netns::METRICS),
    )
    .unwrap();
    // Started inside the speaker's namespace; killed with it when the test ends.
    let _prometheus = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &lan.server.name, "prometheus"])
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (apt-get install prometheus)"),
    );

    let query = |q: &str| -> Option<f64> {
        // Fails (connection refused) until Prometheus is up.
        let out = lan.server.exec(&[
            "curl",
            "-s",
            "--max-time",
            "2",
            "-G",
            "http://127.0.0.1:9090/api/v1/query",
            "--data-urlencode",
            &format!("query={q}"),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let expect = |q: &str, ok: &dyn Fn(f64) -> bool| {
        let start = Instant::now();
        loop {
            let got = query(q);
            if got.is_some_and(ok) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Prometheus never returned the expected value for {q} (last: {got:?})"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    expect(r#"up{job="ferrolb-speaker"}"#, &|v| v == 1.0);
    expect(&format!(r#"metallb_layer2_requests_received{{ip="{VIP4}"}}"#), &|v| v >= 3.0);
    expect(&format!(r#"metallb_layer2_responses_sent{{ip="{VIP4}"}}"#), &|v| v >= 3.0);
    expect(&format!(r#"metallb_layer2_gratuitous_sent{{ip="{VIP6}"}}"#), &|v| v >= 1.0);
    expect(
        &format!(r#"metallb_speaker_announced{{ip="{VIP6}",node="node-a",protocol="layer2",service="default/svc1"}}"#),
        &|v| v == 1.0,
    );
    expect("ferrolb_config_last_reload_successful", &|v| v == 1.0);
    expect("ferrolb_vips", &|v| v == 2.0);
    drop(speaker);
}

struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
