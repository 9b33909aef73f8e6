//! A boxed mix-in is a mix-in, so a model chosen at run time (from a command line or a
//! configuration file) serves like one chosen at compile time.

use std::io;
use std::sync::Arc;

use crate::conn::Conn;
use crate::mixin::MixIn;
use crate::server::Context;

impl MixIn for Box<dyn MixIn> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn validate(&self) -> Result<(), crate::server::ConfigError> {
        (**self).validate()
    }

    fn serve_forever(&mut self, ctx: &Arc<Context>) -> io::Result<()> {
        (**self).serve_forever(ctx)
    }

    fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
        (**self).process_request(ctx, conn)
    }

    fn service_actions(&mut self, ctx: &Arc<Context>) {
        (**self).service_actions(ctx)
    }

    fn can_accept(&self) -> bool {
        (**self).can_accept()
    }

    fn max_blocked(&self) -> Option<usize> {
        (**self).max_blocked()
    }

    fn in_flight(&self) -> usize {
        (**self).in_flight()
    }

    fn server_close(&mut self, ctx: &Arc<Context>) {
        (**self).server_close(ctx)
    }
}
