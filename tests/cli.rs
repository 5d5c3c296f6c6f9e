//! The `mswitch` command line: bad options fail with one line on stderr, and
//! a very short benchmark prints one JSON result.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn mswitch(args: &[&str]) -> Output {
    // Bounded: the child is killed if it runs far longer than it should.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mswitch"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mswitch starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..60_000 {
        if child.try_wait().expect("waiting for mswitch").is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if child.try_wait().expect("waiting for mswitch").is_none() {
        let _ = child.kill();
        panic!("mswitch {args:?} did not finish within 60 s");
    }
    child.wait_with_output().expect("mswitch output")
}

#[test]
fn bad_bench_options_fail_with_one_line_on_stderr() {
    let cases: &[&[&str]] = &[
        &["--pattern", "bogus"],
        &["--size", "10"],
        &["--size", "70000"],
        &["--workers", "0"],
        &["--module", "nope"],
        &["--module", "learn:bogus=1"],
        &["--batch", "5000"],
        &["--batch", "0"],
        &["--ports", "1"],
        &["--pattern", "1to1", "--ports", "3"],
        &["--duration", "0"],
        &["--duration", "-1"],
        &["--duration", "nan"],
        &["--frobnicate"],
        &["--ports", "two"],
        &["--tunnel", "gre"],
        &["--tunnel", "vxlan", "--workers", "2"],
        &["--tunnel", "geneve", "--pattern", "nto1"],
        &["--tunnel", "vxlan", "--size", "10"],
    ];
    for args in cases {
        let mut full = vec!["bench"];
        full.extend_from_slice(args);
        let out = mswitch(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "mswitch {full:?} succeeded; stderr: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "mswitch {full:?}: expected one line on stderr, got {stderr:?}"
        );
        assert!(
            lines[0].starts_with("mswitch: "),
            "mswitch {full:?}: {:?}",
            lines[0]
        );
        assert!(
            lines[0].len() > "mswitch: ".len() + 5,
            "mswitch {full:?}: the message says nothing: {:?}",
            lines[0]
        );
    }
}

#[test]
fn unknown_command_fails_with_one_line() {
    let out = mswitch(&["frobnicate"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("mswitch: "), "{stderr:?}");
}

#[test]
fn modules_lists_the_registry() {
    let out = mswitch(&["modules"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for m in mswitch::module::names() {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(m)),
            "module {m} missing from {stdout:?}"
        );
    }
}

#[test]
fn a_short_bench_prints_one_json_line() {
    let out = mswitch(&["bench", "--duration", "0.2", "--json", "--ports", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one JSON line on stdout, got {stdout:?}"
    );
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("the line is JSON");
    for k in [
        "module",
        "pattern",
        "size",
        "workers",
        "pps",
        "bps",
        "baseline_pps",
        "ratio",
    ] {
        assert!(v.get(k).is_some(), "field {k} missing from {v}");
    }
    assert_eq!(v["module"], "dummy");
    assert_eq!(v["pattern"], "1to1");
    assert_eq!(v["size"], 60);
    assert_eq!(v["workers"], 1);
    let num = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("{k} is not a number in {v}"))
    };
    assert!(num("pps") > 0.0, "{v}");
    assert!(num("bps") > 0.0, "{v}");
    assert!(
        (num("bps") - num("pps") * 60.0 * 8.0).abs() <= 1e-6 * num("bps"),
        "bps = pps * size * 8: {v}"
    );
    assert!(num("baseline_pps") > 0.0, "{v}");
    assert!(num("ratio") > 0.0, "{v}");
    assert!(
        (num("ratio") - num("pps") / num("baseline_pps")).abs() <= 1e-9 * num("ratio").max(1.0),
        "{v}"
    );
}

#[test]
fn a_short_tunnel_bench_prints_one_json_line_with_the_costs() {
    let out = mswitch(&[
        "bench",
        "--tunnel",
        "vxlan",
        "--module",
        "dummy",
        "--size",
        "60",
        "--duration",
        "0.1",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one case, one JSON line: {stdout:?}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("the line is JSON");
    assert_eq!(v["tunnel"], "vxlan");
    assert_eq!(
        (v["module"].as_str(), v["size"].as_u64()),
        (Some("dummy"), Some(60))
    );
    for k in [
        "plain_pps",
        "encap_pps",
        "decap_pps",
        "encap_cost",
        "decap_cost",
    ] {
        let x = v[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing from {v}"));
        assert!(x > 0.0, "{k}: {v}");
    }
    assert!(
        stderr.contains("encap") && stderr.contains("decap"),
        "{stderr}"
    );
}
