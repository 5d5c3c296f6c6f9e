//! BENCHMARKS.md and its charts agree with the results they are drawn
//! from (`bench/results/*.json`), and its links point somewhere:
//! `scripts/plot-benchmarks.py --check` (Python's standard library only).

use std::process::Command;

#[test]
fn the_benchmark_page_matches_its_results() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = match Command::new("python3")
        .arg(format!("{root}/scripts/plot-benchmarks.py"))
        .arg("--check")
        .current_dir(root)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: no python3 ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "plot-benchmarks.py --check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
