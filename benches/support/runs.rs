//! Running one model's example server under one workload and turning what was measured
//! into table rows; the comet section lives here because both benches print it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::chart;
use super::client::{self, CometRound};
use super::model::Model;
use super::report::{Table, num};
use super::server_proc::{ServerProc, ServerUsage, StartError};

/// Starts `example` (a binary in `bin_dir`) on 127.0.0.1:0 as `model`; `--stats` for pools.
pub fn start(bin_dir: &Path, example: &str, model: &Model) -> Result<ServerProc, StartError> {
    let mut args = vec!["--addr".to_owned(), "127.0.0.1:0".to_owned()];
    args.extend(model.args.iter().cloned());
    if model.pooled {
        args.push("--stats".to_owned());
    }
    ServerProc::start(&bin_dir.join(example), &args)
}

/// A progress bar over `steps` server runs, on stderr.
pub fn progress(steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Why a model shows `n/a`, as a footnote: `model: reason`.
pub fn unavailable_note(model: &str, err: &StartError) -> String {
    match err {
        StartError::Unavailable(why) => {
            format!("- {model}: n/a, not offered by the example ({why})")
        }
        StartError::Failed(why) => format!("- {model}: n/a, failed to start ({why})"),
    }
}

/// One comet measurement.
#[derive(Debug, Clone)]
pub struct CometResult {
    /// The model.
    pub model: String,
    /// What the client saw.
    pub round: CometRound,
    /// What the server used.
    pub usage: ServerUsage,
}

/// Runs the comet round against each `(model, waiters)` in turn; rows for the models that
/// could not run are `n/a`. `scale` divides the default waiter counts (quick mode).
pub fn comet_section(
    bin_dir: &Path,
    models: &[(Model, usize)],
    per_run: Duration,
    bar: &ProgressBar,
) -> (Table, Vec<CometResult>) {
    let mut table = Table::new(
        "Comet c10k: N waiters, one notify",
        &[
            "model",
            "waiters",
            "held",
            "released ok",
            "refused",
            "failed",
            "setup s",
            "release s",
            "wall s",
            "user s",
            "sys s",
            "user/sys",
            "peak RSS MiB",
            "KiB/waiter",
            "server fds",
        ],
    );
    let mut results = Vec::new();
    for (model, n) in models {
        bar.set_message(format!("comet {} N={n}", model.name));
        let server = match start(bin_dir, "comet", model) {
            Ok(s) => s,
            Err(e) => {
                table.row(vec![model.name.to_owned(), n.to_string()]);
                table.note(unavailable_note(model.name, &e));
                bar.inc(1);
                continue;
            }
        };
        let deadline = Instant::now() + per_run;
        let mut master_fds = 0;
        let round = client::comet_round(server.addr(), *n, deadline, || {
            server.sample_rss_now();
            // The server's own process (the master of a pool): its hub connections.
            master_fds =
                std::fs::read_dir(format!("/proc/{}/fd", server.pid())).map_or(0, |d| d.count());
        });
        let usage = server.stop();
        let rss_mib = usage.peak_rss_kib as f64 / 1024.0;
        let per_waiter =
            (round.seen_waiting > 0).then(|| usage.peak_rss_kib as f64 / round.seen_waiting as f64);
        table.row(vec![
            model.name.to_owned(),
            n.to_string(),
            round.seen_waiting.to_string(),
            round.released_ok.to_string(),
            round.refused.to_string(),
            round.failed.to_string(),
            num(Some(round.setup.as_secs_f64()), 2),
            num(Some(round.release.as_secs_f64()), 3),
            num(Some(round.wall.as_secs_f64()), 2),
            num(Some(usage.user), 2),
            num(Some(usage.sys), 2),
            num((usage.sys > 0.0).then(|| usage.user / usage.sys), 2),
            num(Some(rss_mib), 1),
            num(per_waiter, 1),
            master_fds.to_string(),
        ]);
        if round.wrong > 0 {
            table.note(format!(
                "- {}: {} waiters got another count than the notify's",
                model.name, round.wrong
            ));
        }
        if let Some(err) = &round.error {
            table.note(format!("- {}: {err}", model.name));
        }
        if !usage.clean_exit {
            table.note(format!("- {}: did not exit 0 on SIGTERM", model.name));
        }
        results.push(CometResult {
            model: model.name.to_owned(),
            round,
            usage,
        });
        bar.inc(1);
    }
    table.note(
        "refused = waiters answered with a non-200 status (the model's cap); failed = waiter \
         connections reset or closed. RSS is summed over the server's processes, so pages \
         shared after fork count once per process. iterative is not run: it cannot hold a waiter \
         and serve the notify (it answers /wait with 503 at once).",
    );
    (table, results)
}

/// Two charts of the comet results: seconds (wall, user, sys) and peak RSS.
pub fn comet_charts(out_dir: &Path, table: &Table) -> Vec<PathBuf> {
    let categories: Vec<String> = table.rows.iter().map(|r| r[0].clone()).collect();
    let seconds: Vec<chart::Series> = ["wall s", "user s", "sys s"]
        .iter()
        .map(|c| ((*c).to_owned(), table.numbers(c)))
        .collect();
    let mut written = Vec::new();
    let time_svg = out_dir.join("comet_seconds.svg");
    if chart::bars(
        &time_svg,
        "Comet: N waiters, one notify",
        "seconds",
        &categories,
        &seconds,
    )
    .is_ok()
    {
        written.push(time_svg);
    }
    let rss_svg = out_dir.join("comet_rss.svg");
    let rss = vec![("peak RSS MiB".to_owned(), table.numbers("peak RSS MiB"))];
    if chart::bars(&rss_svg, "Comet: server peak RSS", "MiB", &categories, &rss).is_ok() {
        written.push(rss_svg);
    }
    written
}
