//! A static file server: the files under `--root`, with `Range`, `If-Modified-Since`
//! and `HEAD`, sent by `sendfile(2)` under any model.
//!
//! ```text
//! cargo run --example static -- --root ./public --mixin scheduled
//! curl -r 0-99 localhost:8000/big.iso      # 206, the first 100 bytes
//! curl localhost:8000/../etc/passwd        # 403 (curl itself strips the ..; try nc)
//! ```
//!
//! Request paths are opened beneath the root by `StaticFiles::open`: `..` segments (plain
//! or percent-encoded), absolute paths and symbolic links leading out of the root are
//! refused with `403`; a directory serves its `index.html`.

mod common;
#[path = "common/protocol.rs"]
mod protocol;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mixserve::http::HttpConfig;
use mixserve::http::files::StaticFiles;

#[derive(Debug, Parser)]
#[command(about = "Static file server: the files under --root")]
struct Cli {
    /// The directory to serve.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    #[command(flatten)]
    protocol: protocol::ProtocolArgs,
    #[command(flatten)]
    serve: common::ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let files = match StaticFiles::new(&cli.root) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("error: --root {}: {error}", cli.root.display());
            return ExitCode::from(2);
        }
    };
    protocol::serve_app(&cli.serve, &cli.protocol, files, HttpConfig::default())
}
