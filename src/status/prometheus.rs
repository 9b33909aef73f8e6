//! [`Status::prometheus`]: the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;

use super::{Figures, ObjectFigures, Status};

/// One metric: name, type, help, and how to read it from a row.
struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    read: fn(&Figures) -> u64,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "mixserve_connections_total",
        kind: "counter",
        help: "Connections handed to the handler.",
        read: |f| f.connections,
    },
    Metric {
        name: "mixserve_requests_total",
        kind: "counter",
        help: "Requests parsed by the HTTP or SCGI adapter.",
        read: |f| f.requests,
    },
    Metric {
        name: "mixserve_in_flight",
        kind: "gauge",
        help: "Connections inside the handler now.",
        read: |f| f.in_flight,
    },
    Metric {
        name: "mixserve_refused_total",
        kind: "counter",
        help: "Connections refused at a cap.",
        read: |f| f.refused,
    },
    Metric {
        name: "mixserve_wasted_wakeups_total",
        kind: "counter",
        help: "Wake-ups that found no connection to accept.",
        read: |f| f.wasted_wakeups,
    },
    Metric {
        name: "mixserve_waiters",
        kind: "gauge",
        help: "Handlers blocked in a shared-object wait now.",
        read: |f| f.waiters,
    },
    Metric {
        name: "mixserve_hub_round_trips_total",
        kind: "counter",
        help: "Requests sent to the hub by forked processes.",
        read: |f| f.hub_round_trips,
    },
    Metric {
        name: "mixserve_loop_stalls_total",
        kind: "counter",
        help: "Handlers that kept a scheduled loop's thread past the threshold.",
        read: |f| f.stalls,
    },
    Metric {
        name: "mixserve_loop_naps_total",
        kind: "counter",
        help: "Times a scheduled loop napped instead of blocking, its clients all slow to come back.",
        read: |f| f.naps,
    },
];

impl Status {
    /// The snapshot in the Prometheus text exposition format: per metric a `# HELP` and
    /// a `# TYPE` line, the server's total without labels, then one sample per
    /// preforked worker with a `worker="N"` label (the total is their sum plus what
    /// the master itself counted, e.g. refusals). Worker restarts and the model's name
    /// (`mixserve_info{model="…"} 1`) come last.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for metric in METRICS {
            let _ = writeln!(out, "# HELP {} {}", metric.name, metric.help);
            let _ = writeln!(out, "# TYPE {} {}", metric.name, metric.kind);
            let _ = writeln!(out, "{} {}", metric.name, (metric.read)(&self.total));
            for worker in &self.workers {
                let _ = writeln!(
                    out,
                    "{}{{worker=\"{}\"}} {}",
                    metric.name,
                    worker.worker,
                    (metric.read)(&worker.figures)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP mixserve_worker_restarts_total Workers started in a slot after its first (replacements, retirements).\n\
             # TYPE mixserve_worker_restarts_total counter\n\
             mixserve_worker_restarts_total {}",
            self.worker_restarts
        );
        for worker in &self.workers {
            let _ = writeln!(
                out,
                "mixserve_worker_restarts_total{{worker=\"{}\",pid=\"{}\"}} {}",
                worker.worker,
                worker.pid,
                worker.starts.saturating_sub(1)
            );
        }
        objects_into(&self.objects, &mut out);
        let _ = writeln!(
            out,
            "# HELP mixserve_info The concurrency model.\n\
             # TYPE mixserve_info gauge\n\
             mixserve_info{{model=\"{}\"}} 1",
            escape(self.model)
        );
        out
    }
}

/// The watched shared objects: waiters on each `Broadcast`, queue of each `Channel`.
fn objects_into(all: &[ObjectFigures], out: &mut String) {
    let families = [
        (
            "mixserve_object_waiters",
            "Handlers waiting on a named Broadcast now.",
            "broadcast",
        ),
        (
            "mixserve_object_queued",
            "Values queued in a named Channel now.",
            "channel",
        ),
    ];
    for (name, help, kind) in families {
        let mut objects = all.iter().filter(|o| o.kind == kind).peekable();
        if objects.peek().is_none() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for object in objects {
            let value = if kind == "broadcast" {
                object.waiting
            } else {
                object.queued
            };
            let _ = writeln!(out, "{name}{{object=\"{}\"}} {value}", escape(&object.name));
        }
    }
}

/// A label value as the exposition format wants it: `\`, `"` and newlines escaped.
/// Every label value goes through it, the model's name too: a user's `MixIn::name`
/// may hold any of them, and one unescaped quote makes the whole page unreadable.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::super::{Figures, ObjectFigures, Status, WorkerFigures};

    #[test]
    fn renders_totals_and_worker_rows() {
        let row = |requests| Figures {
            requests,
            in_flight: 1,
            ..Figures::default()
        };
        let status = Status {
            model: "preforked",
            total: row(5),
            worker_restarts: 1,
            workers: vec![
                WorkerFigures {
                    worker: 0,
                    pid: 10,
                    starts: 2,
                    figures: row(2),
                },
                WorkerFigures {
                    worker: 1,
                    pid: 11,
                    starts: 1,
                    figures: row(3),
                },
            ],
            objects: vec![
                ObjectFigures {
                    name: "news \"x\"".into(),
                    kind: "broadcast",
                    waiting: 7,
                    queued: 0,
                },
                ObjectFigures {
                    name: "jobs".into(),
                    kind: "channel",
                    waiting: 0,
                    queued: 4,
                },
            ],
        };
        let text = status.prometheus();
        assert!(text.contains("# TYPE mixserve_requests_total counter\n"));
        assert!(text.contains("# TYPE mixserve_in_flight gauge\n"));
        assert!(text.contains("\nmixserve_requests_total 5\n"));
        assert!(text.contains("mixserve_requests_total{worker=\"0\"} 2\n"));
        assert!(text.contains("mixserve_requests_total{worker=\"1\"} 3\n"));
        assert!(text.contains("mixserve_worker_restarts_total{worker=\"0\",pid=\"10\"} 1\n"));
        assert!(text.contains("mixserve_info{model=\"preforked\"} 1\n"));
        assert!(text.contains("mixserve_object_waiters{object=\"news \\\"x\\\"\"} 7\n"));
        assert!(text.contains("mixserve_object_queued{object=\"jobs\"} 4\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("a sample has a value");
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
    }

    /// A user's model may be named anything; its name was written unescaped.
    #[test]
    fn a_model_name_with_quotes_is_escaped_like_every_label_value() {
        let status = Status {
            model: "my \"fast\" model\\v2\n",
            total: Figures::default(),
            worker_restarts: 0,
            workers: Vec::new(),
            objects: Vec::new(),
        };
        let text = status.prometheus();
        let line = r#"mixserve_info{model="my \"fast\" model\\v2\n"} 1"#;
        assert!(text.contains(&format!("\n{line}\n")), "{text}");
    }
}
