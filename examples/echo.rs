//! A raw TCP echo server: a plain `Handler`, no HTTP, under any model.

mod common;

use std::io::{self, BufRead, Write};

use clap::Parser;
use mixserve::{Conn, Handler};

#[derive(Debug, Parser)]
#[command(about = "TCP echo server")]
struct Cli {
    #[command(flatten)]
    serve: common::ServeArgs,
}

/// Sends back whatever arrives, as it arrives.
struct Echo;

impl Handler for Echo {
    fn handle(&mut self, conn: &mut Conn) -> io::Result<()> {
        loop {
            let received = conn.fill_buf()?;
            if received.is_empty() {
                return Ok(());
            }
            let chunk = received.to_vec();
            conn.consume(chunk.len());
            conn.write_all(&chunk)?;
            conn.flush()?;
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    common::serve(&cli.serve, "tcp", || Echo)
}
