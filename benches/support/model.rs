//! The models compared, as command-line arguments of the example servers, the book's
//! reference numbers, and the parser for the per-worker table printed by `--stats`.
//!
//! This is the one place that knows the examples' model flags (`--mixin`, `--workers`,
//! `--max-workers`, `--inner`, `--accept`, `--threads`); [`super::runs::start`] adds only
//! `--addr` and `--stats`. When the examples' flags change, change them here.

/// One concurrency model as the examples are asked to run it.
#[derive(Debug, Clone)]
pub struct Model {
    /// Short name used in tables and in `--models` filters, e.g. `preforked-locked-fcntl`.
    pub name: &'static str,
    /// The server row of UNP Figure 30.1 this corresponds to, if any.
    pub unp_row: Option<usize>,
    /// Arguments after `--addr`: `--mixin …` and the model's options.
    pub args: Vec<String>,
    /// Whether `--stats` prints a per-worker table (pooled models).
    pub pooled: bool,
}

fn model(name: &'static str, unp_row: Option<usize>, args: &str) -> Model {
    Model {
        name,
        unp_row,
        args: args.split_whitespace().map(String::from).collect(),
        pooled: args.contains("--workers") || args.contains("--threads"),
    }
}

/// Workers or threads in every pool, as in UNP Figure 30.2.
pub const POOL: usize = 15;

/// Every model in UNP Figure 30.1 order, then the two the book does not have.
pub fn all() -> Vec<Model> {
    // Fixed pools, as in the book: no growth beyond the POOL started.
    let pre = format!(
        "--mixin preforked --workers {POOL} --max-workers {POOL} --inner iterative --accept"
    );
    let thr = format!("--mixin prethreaded --threads {POOL} --max-workers {POOL} --accept");
    vec![
        model("iterative", Some(0), "--mixin iterative"),
        model("forking", Some(1), "--mixin forking"),
        model("preforked-shared", Some(2), &format!("{pre} shared")),
        model("preforked-locked-fcntl", Some(3), &format!("{pre} locked")),
        model(
            "preforked-locked-mutex",
            Some(4),
            &format!("{pre} locked-mutex"),
        ),
        model("preforked-passed", Some(5), &format!("{pre} passed")),
        model("threading", Some(6), "--mixin threading"),
        model("prethreaded-locked", Some(7), &format!("{thr} locked")),
        model("prethreaded-handoff", Some(8), &format!("{thr} handoff")),
        model("preforked-reuseport", None, &format!("{pre} reuseport")),
        model("scheduled", None, "--mixin scheduled"),
    ]
}

/// Models whose name contains one of the comma-separated `filter` words (all if empty).
pub fn select(models: Vec<Model>, filter: &str) -> Vec<Model> {
    let words: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    models
        .into_iter()
        .filter(|m| words.is_empty() || words.iter().any(|w| m.name.contains(w)))
        .collect()
}

/// Models for the comet round and how many waiters each is asked to hold by default:
/// a pool of P can hold P-1 waiters (one worker must stay free for the notify).
pub fn comet() -> Vec<(Model, usize)> {
    vec![
        (model("scheduled", None, "--mixin scheduled"), 10_000),
        (model("threading", Some(6), "--mixin threading"), 10_000),
        (model("forking", Some(1), "--mixin forking"), 1_000),
        (
            model(
                "preforked-2x-scheduled",
                None,
                "--mixin preforked --workers 2 --inner scheduled --accept shared",
            ),
            10_000,
        ),
        (
            model(
                "preforked-2x-threading",
                None,
                "--mixin preforked --workers 2 --inner threading --accept shared",
            ),
            2_000,
        ),
        (
            model(
                "prethreaded-100",
                None,
                "--mixin prethreaded --threads 100 --accept handoff",
            ),
            90,
        ),
    ]
}

/// One row of UNP Figure 30.1: process-control CPU seconds, as the difference from the
/// iterative baseline, for 5 clients × 500 connections × 4,000 bytes.
#[derive(Debug, Clone, Copy)]
pub struct BookRow {
    /// Row number in the figure (0 = iterative baseline).
    pub row: usize,
    /// The book's description of the server.
    pub server: &'static str,
    /// Solaris column, seconds (None where not recalled).
    pub solaris: Option<f64>,
    /// Digital Unix column, seconds (None where not recalled).
    pub digital_unix: Option<f64>,
}

/// Whether [`BOOK_FIG_30_1`] has been checked against the printed book. It has not: the
/// values below are recalled, so every table that shows them says "unverified".
pub const BOOK_VERIFIED: bool = false;

/// W. Richard Stevens, Bill Fenner, Andrew M. Rudoff, *UNIX Network Programming, Volume 1*,
/// 3rd ed. (Addison-Wesley, 2004), Figure 30.1 "Timing comparisons of the various servers
/// discussed in this chapter". Recalled, NOT verified against the printed figure (see
/// [`BOOK_VERIFIED`]); correct them from the book before quoting them anywhere.
pub const BOOK_FIG_30_1: [BookRow; 9] = [
    book(
        0,
        "iterative server (measurement baseline)",
        Some(0.0),
        Some(0.0),
    ),
    book(
        1,
        "concurrent server, one fork per client request",
        Some(504.2),
        Some(168.9),
    ),
    book(
        2,
        "prefork, each child calling accept",
        Some(6.2),
        Some(1.8),
    ),
    book(
        3,
        "prefork, file locking to protect accept",
        Some(25.2),
        Some(10.0),
    ),
    book(
        4,
        "prefork, thread mutex locking to protect accept",
        Some(21.5),
        None,
    ),
    book(
        5,
        "prefork, parent passing socket descriptor to child",
        Some(36.7),
        Some(10.9),
    ),
    book(
        6,
        "concurrent server, create one thread per client request",
        Some(18.7),
        Some(4.7),
    ),
    book(
        7,
        "prethreaded, mutex locking to protect accept",
        Some(8.6),
        Some(3.5),
    ),
    book(
        8,
        "prethreaded, main thread calls accept",
        Some(14.5),
        Some(5.0),
    ),
];

const fn book(
    row: usize,
    server: &'static str,
    solaris: Option<f64>,
    digital_unix: Option<f64>,
) -> BookRow {
    BookRow {
        row,
        server,
        solaris,
        digital_unix,
    }
}

/// Connections per worker from the lines a server printed with `--stats`. The format is
/// not fixed, so this reads loosely: a header line with a column whose name starts with
/// `conn` (separated by spaces or `|`), then the rows under it while they parse; failing
/// that, lines like `worker 3: 167 connections`. Empty when nothing matches.
pub fn parse_worker_stats(lines: &[String]) -> Vec<u64> {
    let cells = |l: &str| -> Vec<String> {
        l.split(|c: char| c.is_whitespace() || c == '|' || c == ',')
            .filter(|c| !c.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    for (i, line) in lines.iter().enumerate() {
        let header = cells(line);
        let Some(col) = header.iter().position(|c| c.starts_with("conn")) else {
            continue;
        };
        let counts: Vec<u64> = lines[i + 1..]
            .iter()
            .map(|l| cells(l))
            .skip_while(|row| {
                row.iter()
                    .all(|c| c.chars().all(|ch| ch == '-' || ch == '+'))
            })
            // The table ends with a totals row, which is not a worker.
            .take_while(|row| row.first().is_none_or(|first| first != "total"))
            .map_while(|row| row.get(col)?.parse().ok())
            .collect();
        if !counts.is_empty() {
            return counts;
        }
    }
    lines
        .iter()
        .filter(|l| l.to_lowercase().contains("worker") && l.to_lowercase().contains("conn"))
        .filter_map(|l| {
            let numbers: Vec<u64> = l
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            numbers.get(1).copied()
        })
        .collect()
}
