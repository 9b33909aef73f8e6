//! Keep-alive latency without coordinated omission: an open-loop load at a constant
//! request rate. Each of C connections has its own schedule (one request every C / rate
//! seconds, the connections staggered), and a request's latency runs from its *intended*
//! send time: when the server is slow, the requests that should have gone out meanwhile
//! wait in the client and their wait counts, as it would for real users. Requests still
//! unanswered when the window closes go into the histogram with the time they have waited
//! so far (a lower bound) and are counted apart.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::fleet::{Fleet, Next};

/// Outcome of one open-loop run.
#[derive(Debug, Clone, Default)]
pub struct OpenLoop {
    /// Requests per second asked for.
    pub rate: f64,
    /// Connections open.
    pub connected: usize,
    /// Requests answered whose intended time fell in the measured window.
    pub answered: u64,
    /// Requests whose intended time fell in the window but had no answer at its end.
    pub unanswered: u64,
    /// Answered requests per second of the window.
    pub achieved: f64,
    /// Latency quantiles from the intended send time, µs: p50, p99, p99.9, max.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest, µs.
    pub max_us: u64,
    /// 99th percentile of how late the client itself sent (its own timer lag), µs.
    pub send_lag_p99_us: u64,
    /// Answers with a status other than 200.
    pub non_200: u64,
}

/// `conns` keep-alive connections sending `GET /` at `rate` requests per second in all:
/// `warmup` unmeasured, then `duration` measured.
pub fn run(
    addr: SocketAddr,
    conns: usize,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> io::Result<OpenLoop> {
    let mut fleet = Fleet::connect(addr, conns, Instant::now() + Duration::from_secs(5))?;
    let timer = Timer::new()?;
    fleet.register_wakeup(timer.fd.as_raw_fd())?;
    fleet.set_request(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    let n = fleet.len();
    let interval = Duration::from_secs_f64(n as f64 / rate.max(1e-3));
    let t0 = Instant::now();
    let (start, end) = (t0 + warmup, t0 + warmup + duration);
    // Each connection's intended time for its next (or in-flight) request.
    let mut intended: Vec<Instant> = (0..n)
        .map(|i| t0 + interval.mul_f64(i as f64 / n as f64))
        .collect();
    let new_hist =
        || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(io::Error::other);
    let (mut hist, mut lag) = (new_hist()?, new_hist()?);
    let mut out = OpenLoop {
        rate,
        connected: (0..n).filter(|&i| fleet.is_idle(i)).count(),
        ..OpenLoop::default()
    };
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let mut next_due = end;
        for (i, due) in intended.iter().enumerate() {
            if !fleet.is_idle(i) {
                continue;
            }
            if *due <= now {
                fleet.send_on(i);
                if *due >= start {
                    let _ = lag.record((now - *due).as_micros() as u64 + 1);
                }
            } else {
                next_due = next_due.min(*due);
            }
        }
        // Sleep in the poll until a response comes or the next send is due: mio's own
        // timeout has whole milliseconds, the timer nanoseconds (and no spinning, which
        // would take the CPU from the server on a small machine).
        timer.arm(next_due.saturating_duration_since(Instant::now()));
        fleet.poll_once(Duration::from_millis(50), |i, status, _, _| {
            let now = Instant::now();
            if intended[i] >= start && intended[i] < end {
                let _ = hist.record((now - intended[i]).as_micros().max(1) as u64);
                out.answered += 1;
                if status != 200 {
                    out.non_200 += 1;
                }
            }
            intended[i] += interval;
            Next::Idle
        })?;
        timer.drain();
    }
    // Requests due in the window and never answered: their wait so far, a lower bound.
    for due in &mut intended {
        while *due < end {
            if *due >= start {
                let _ = hist.record((end - *due).as_micros().max(1) as u64);
                out.unanswered += 1;
            }
            *due += interval;
        }
    }
    out.achieved = out.answered as f64 / duration.as_secs_f64();
    out.p50_us = hist.value_at_quantile(0.5);
    out.p99_us = hist.value_at_quantile(0.99);
    out.p999_us = hist.value_at_quantile(0.999);
    out.max_us = hist.max();
    out.send_lag_p99_us = lag.value_at_quantile(0.99);
    Ok(out)
}

/// A monotonic `timerfd`, non-blocking: readable once its one-shot time has come.
struct Timer {
    fd: OwnedFd,
}

impl Timer {
    fn new() -> io::Result<Timer> {
        let flags = libc::TFD_NONBLOCK | libc::TFD_CLOEXEC;
        // SAFETY: plain syscall; the fd it returns is owned here and closed on drop.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and nothing else owns it.
        Ok(Timer {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Fires once, `after` from now (at once for zero).
    fn arm(&self, after: Duration) {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the fd is a timerfd; spec is valid; the old value is not asked for.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// Reads the expiry count, if any, so that the timer is no longer readable.
    fn drain(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a buffer of 8; EAGAIN when not expired.
        unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }
}
