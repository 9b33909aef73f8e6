//! Support code shared by the model-comparison benches `benches/models.rs` and
//! `benches/comet.rs`: which models exist and how to start them ([`model`]), a server
//! example run as a child process and measured from outside ([`server_proc`]), our own
//! load generators ([`client`], [`fleet`]), `wrk` when it is installed ([`wrk`]), facts
//! about the machine ([`machine`]), the c100k round and its client processes ([`c100k`]), the Markdown/CSV/SVG output ([`report`], [`chart`]),
//! and the glue that runs one model under one workload ([`runs`]).
//!
//! Each bench compiles this folder on its own and uses only part of it, hence the
//! `#[allow(dead_code)]` on the `mod support;` line of each bench.

pub mod c100k;
pub mod c100k_client;
pub mod chart;
pub mod client;
pub mod fig30_report;
pub mod fleet;
pub mod herd;
pub mod herd_server;
pub mod machine;
pub mod model;
pub mod open_loop;
pub mod proc_cpu;
pub mod process_control;
pub mod report;
pub mod runs;
pub mod server_proc;
pub mod stats;
pub mod throughput;
pub mod wrk;
