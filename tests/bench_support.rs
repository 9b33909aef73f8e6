//! Tests of the model-comparison bench's own logic (`benches/support`): the noise test and
//! the Fig. 30.1 report built on it, the fixed pools of Fig. 30.2, the `/proc` CPU reading,
//! and the open-loop schedule. The servers themselves are exercised by the bench.

#[allow(dead_code)]
#[path = "../benches/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::fig30_report;
use support::model::{self, Model};
use support::process_control::{Measured, Row};
use support::stats::{self, Summary};

fn row(name: &'static str, samples: &[f64]) -> Row {
    Row {
        model: Model {
            name,
            unp_row: None,
            args: Vec::new(),
            pooled: false,
        },
        unavailable: None,
        samples: samples.iter().map(|s| Some(*s)).collect(),
        sleeps: Vec::new(),
        ok: 100,
        errors: 0,
        conns: 20,
        usage: None,
    }
}

fn measured(rows: Vec<Row>) -> Measured {
    Measured {
        rounds: rows[0].samples.len(),
        rows,
        clients: 5,
        bytes: 4000,
        converged: true,
        target_rel_se: 0.015,
    }
}

/// Noisy samples around `centre` whose noise is shared round by round (`common`).
fn noisy(centre: f64, common: &[f64]) -> Vec<f64> {
    common.iter().map(|c| centre * c).collect()
}

const COMMON: [f64; 9] = [1.0, 1.3, 0.9, 1.1, 1.6, 0.95, 1.2, 1.05, 0.85];

#[test]
fn summary_median_and_quartiles() {
    let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
    assert_eq!(
        (s.n, s.median, s.q1, s.q3, s.min, s.max),
        (5, 3.0, 2.0, 4.0, 1.0, 5.0)
    );
    assert!(s.se() > 0.0 && s.se().is_finite());
    assert!(Summary::of(&[]).se().is_infinite());
}

#[test]
fn paired_log_ratios_cancel_a_shared_slowdown() {
    let a: Vec<Option<f64>> = noisy(100.0, &COMMON).into_iter().map(Some).collect();
    let b: Vec<Option<f64>> = noisy(110.0, &COMMON).into_iter().map(Some).collect();
    let d = Summary::of(&stats::paired_log(&b, &a));
    assert!(
        stats::distinct_from_zero(&d),
        "10% apart with shared noise: {d:?}"
    );
    assert!(d.median > 0.0);
    let same = Summary::of(&stats::paired_log(&a, &a));
    assert!(!stats::distinct_from_zero(&same));
}

#[test]
fn coefficient_of_variation() {
    assert_eq!(stats::cv(&[10, 10, 10]), Some(0.0));
    let cv = stats::cv(&[0, 20]).unwrap_or_default();
    assert!((cv - 1.0).abs() < 1e-9, "{cv}");
    assert_eq!(stats::cv(&[]), None);
}

#[test]
fn report_orders_distinct_rows_and_prints_noise_not_negative_costs() {
    let jitter = [1.0, 0.97, 1.02, 0.99, 1.01, 1.03, 0.98, 1.0, 0.96];
    let near: Vec<f64> = noisy(100.0, &COMMON)
        .iter()
        .zip(jitter)
        .map(|(v, j)| v * j)
        .collect();
    let m = measured(vec![
        row("iterative", &noisy(100.0, &COMMON)),
        row("forking", &noisy(500.0, &COMMON)),
        row("cheap-pool", &near),
    ]);
    let order = fig30_report::order_line(&m);
    assert!(order.ends_with("< forking"), "{order}");
    assert!(order.contains('≈'), "{order}");
    let table = fig30_report::cpu_table(&m);
    let delta = table.columns.iter().position(|c| c == "Δ vs iterative µs");
    let delta = delta.expect("Δ column");
    let cells: Vec<&str> = table.rows.iter().map(|r| r[delta].as_str()).collect();
    assert_eq!(cells[0], "0 (baseline)");
    assert!(
        cells[1].parse::<f64>().is_ok_and(|d| d > 300.0),
        "{cells:?}"
    );
    assert_eq!(cells[2], "≈ 0 (noise)");
    let notes = table.notes.join("\n");
    assert!(
        notes.contains("Within noise: iterative ≈ cheap-pool")
            || notes.contains("cheap-pool ≈ iterative"),
        "{notes}"
    );
}

#[test]
fn agreement_reports_a_reversed_pair() {
    let now = measured(vec![
        row("a", &noisy(100.0, &COMMON)),
        row("b", &noisy(200.0, &COMMON)),
    ]);
    let before = measured(vec![
        row("a", &noisy(200.0, &COMMON)),
        row("b", &noisy(100.0, &COMMON)),
    ]);
    let dir = std::env::temp_dir().join(format!("mixserve-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let same = dir.join("same.csv");
    let reversed = dir.join("reversed.csv");
    fig30_report::rounds_table(&now)
        .write_csv(&same)
        .expect("write");
    fig30_report::rounds_table(&before)
        .write_csv(&reversed)
        .expect("write");
    let ok = fig30_report::agreement(&same, &now);
    let bad = fig30_report::agreement(&reversed, &now);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        ok.contains("1 pairs distinct in both runs, 1 in the same order (no pair reversed)"),
        "{ok}"
    );
    assert!(bad.contains("REVERSED: a vs b"), "{bad}");
}

#[test]
fn every_pool_is_fixed_at_fifteen() {
    let pools: Vec<Model> = model::all().into_iter().filter(|m| m.pooled).collect();
    assert!(pools.len() >= 6);
    for m in pools {
        let args = m.args.join(" ");
        let size = if args.contains("prethreaded") {
            "--threads 15"
        } else {
            "--workers 15"
        };
        assert!(
            args.contains(size) && args.contains("--max-workers 15"),
            "{}: {args}",
            m.name
        );
    }
}

#[test]
fn proc_cpu_sees_this_process_and_its_work() {
    // SAFETY: getpgrp has no preconditions.
    let pgid = unsafe { libc::getpgrp() };
    let before = support::proc_cpu::snapshot(pgid);
    assert!(before.processes >= 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut x = 0u64;
    let mut after = before;
    while after.ns <= before.ns && Instant::now() < deadline {
        for i in 0..100_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        after = support::proc_cpu::snapshot(pgid);
    }
    assert!(after.ns > before.ns, "no CPU counted for a busy loop");
}

#[test]
fn open_loop_accounts_for_every_scheduled_request() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Answers the first connection forever, never the second: its requests stay due.
    let server = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let Ok((_held, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while let Ok(k) = stream.read(&mut buf) {
            if k == 0 {
                return;
            }
            seen.extend_from_slice(&buf[..k]);
            while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                seen.drain(..end + 4);
                let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
                if stream.write_all(reply).is_err() {
                    return;
                }
            }
        }
    });
    let (rate, window) = (200.0, Duration::from_millis(500));
    let run = support::open_loop::run(addr, 2, rate, Duration::from_millis(100), window);
    let run = run.expect("open loop");
    let due = rate * window.as_secs_f64();
    let counted = (run.answered + run.unanswered) as f64;
    assert!(
        (counted - due).abs() <= 2.0,
        "{counted} requests counted, {due} due"
    );
    assert!(run.unanswered as f64 >= due / 2.0 - 1.0, "{run:?}");
    let _ = server.join();
}

#[test]
fn a_distinct_saving_below_the_baseline_is_marked_not_hidden() {
    let m = measured(vec![
        row("iterative", &noisy(100.0, &COMMON)),
        row("event-loop", &noisy(60.0, &COMMON)),
    ]);
    let table = fig30_report::cpu_table(&m);
    let delta = table.columns.iter().position(|c| c == "Δ vs iterative µs");
    let cell = &table.rows[1][delta.expect("Δ column")];
    assert!(cell.ends_with('‡'), "{cell}");
    assert!(
        table
            .notes
            .iter()
            .any(|n| n.starts_with("‡ Distinctly cheaper"))
    );
}

#[test]
fn herd_child_lines_parse() {
    let line = "herd child 3: 120 connections, 131 wakeups, 11 wasted";
    assert_eq!(support::herd::parse_child(line), Some([120, 131, 11]));
    assert_eq!(
        support::herd::parse_child("listening on tcp://127.0.0.1:1"),
        None
    );
}
