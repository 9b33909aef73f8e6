//! Naps before blocking: a loop that runs out of work sleeps a few short naps on its own
//! timer, looking at epoll after each, before it blocks in `epoll_wait`.
//!
//! Why: a loop blocked in `epoll_wait` sits on its epoll's wait queue, and whoever makes
//! one of its sockets ready wakes it — inside that writer's `write`, on the writer's
//! CPU, with an inter-processor interrupt when the loop's CPU has gone idle (several
//! microseconds under a hypervisor). A loop that keeps up with its clients runs dry
//! thousands of times a second, and each client write that finds it blocked pays for
//! the wake-up. A napping loop is on no wait queue: a client's write only queues an
//! event, and the loop's own timer wakes it, on its own CPU. Pinned against wrk, whose
//! core is the bottleneck there, that is 1.5–2.5 % more requests per second and less
//! server CPU per request (README, "Against other servers").
//!
//! The price: a request that arrives during a nap waits for the nap's end (20 µs by
//! default). A loop still idle after its naps blocks as before, so an idle server costs
//! nothing; [`RuntimeConfig::idle_nap`](super::RuntimeConfig::idle_nap) of zero turns
//! the naps off.

use std::io;
use std::time::{Duration, Instant};

use nix::sys::prctl;

use super::RuntimeConfig;
use super::scheduler::{Core, WakeReason};

/// The timer slack a napping loop's thread runs with: a nap ends within this of its
/// due time (a normal thread's default, 50 µs, would stretch a 20 µs nap to 70).
const NAP_SLACK_NS: u64 = 1_000;

/// A loop's naps: how long each, how many before it blocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Naps {
    nap: Duration,
    count: u32,
}

impl Naps {
    pub(crate) fn new(config: &RuntimeConfig) -> Naps {
        Naps {
            nap: config.idle_nap,
            count: config.idle_naps,
        }
    }

    /// False when the loop blocks as soon as it runs dry.
    pub(crate) fn enabled(&self) -> bool {
        !self.nap.is_zero() && self.count > 0
    }
}

/// Naps until work comes, a timer falls due (`timeout` from now) or the naps run out.
/// True when the loop must not block: a coroutine is runnable or a timer is due.
pub(crate) fn nap_before_block(core: &Core, timeout: Option<Duration>) -> io::Result<bool> {
    let naps = core.naps;
    if !naps.enabled() {
        return Ok(false);
    }
    let due = timeout.map(|timeout| Instant::now() + timeout);
    for _ in 0..naps.count {
        core.reactor.poll(Some(Duration::ZERO), |ticket| {
            core.wake(ticket, WakeReason::Woken);
        })?;
        core.drain_remote();
        if !core.run_queue_is_empty() {
            return Ok(true);
        }
        let nap = match due {
            Some(due) => naps.nap.min(due.saturating_duration_since(Instant::now())),
            None => naps.nap,
        };
        if nap.is_zero() {
            return Ok(true);
        }
        std::thread::sleep(nap);
    }
    Ok(false)
}

/// Sets the calling thread's timer slack for naps while it lives; restores the old one.
#[derive(Debug)]
pub(crate) struct NapSlack {
    old: Option<u64>,
}

impl NapSlack {
    /// Tightens the slack if `naps` are on (else changes nothing). A thread whose slack
    /// cannot be read or set naps with the slack it has.
    pub(crate) fn set(naps: Naps) -> NapSlack {
        let old = match naps.enabled() {
            true => prctl::get_timerslack().ok().map(|ns| ns as u64),
            false => None,
        };
        let old = old.filter(|_| prctl::set_timerslack(NAP_SLACK_NS as _).is_ok());
        NapSlack { old }
    }
}

impl Drop for NapSlack {
    fn drop(&mut self) {
        if let Some(old) = self.old {
            let _ = prctl::set_timerslack(old as _);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slack_is_tight_while_napping_and_restored_after() {
        let before = prctl::get_timerslack().unwrap();
        let config = RuntimeConfig::default();
        {
            let _slack = NapSlack::set(Naps::new(&config));
            assert_eq!(prctl::get_timerslack().unwrap() as u64, NAP_SLACK_NS);
        }
        assert_eq!(prctl::get_timerslack().unwrap(), before);
        let off = RuntimeConfig {
            idle_nap: Duration::ZERO,
            ..RuntimeConfig::default()
        };
        let _slack = NapSlack::set(Naps::new(&off));
        assert_eq!(prctl::get_timerslack().unwrap(), before);
    }
}
