//! A model written the way a user writes one, with the public API only: a thread per
//! connection, joined when done. `--inner user` runs it inside every preforked worker,
//! which shows that `Preforked` composes any `MixIn`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use mixserve::{Conn, Context, MixIn};

/// A thread per connection, without a cap.
#[derive(Debug, Default)]
pub struct UserThreads {
    /// Threads started and not yet joined.
    threads: Vec<JoinHandle<()>>,
    /// Threads still serving.
    running: Arc<AtomicUsize>,
}

impl UserThreads {
    fn join_finished(&mut self) {
        let (done, live) = std::mem::take(&mut self.threads)
            .into_iter()
            .partition(JoinHandle::is_finished);
        self.threads = live;
        for handle in done {
            let _ = handle.join();
        }
    }
}

impl MixIn for UserThreads {
    fn name(&self) -> &'static str {
        "user"
    }

    fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
        let (ctx, running) = (Arc::clone(ctx), Arc::clone(&self.running));
        running.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new().spawn(move || {
            ctx.finish_request(conn);
            running.fetch_sub(1, Ordering::SeqCst);
        });
        match spawned {
            Ok(handle) => {
                self.threads.push(handle);
                Ok(())
            }
            Err(e) => {
                self.running.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    fn service_actions(&mut self, _ctx: &Arc<Context>) {
        self.join_finished();
    }

    fn in_flight(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    fn server_close(&mut self, _ctx: &Arc<Context>) {
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}
