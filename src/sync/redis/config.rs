//! Where Redis is and how long to wait for it: the URL, the timeouts, and the start-up
//! check that turns a bad URL or an unreachable server into an error before serving.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, IntoConnectionInfo, Value};

use super::frame;
use crate::sync::redis::RedisError;

/// Settings of one Redis backend (see [`RedisBuilder`](crate::sync::RedisBuilder)).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The URL as given (for messages).
    pub(crate) url: String,
    /// The server's address, resolved once at start-up.
    pub(crate) addr: SocketAddr,
    /// `SELECT` this database (0: none sent).
    pub(crate) db: i64,
    /// `AUTH` with these, when the URL has a password.
    pub(crate) auth: Option<(Option<String>, String)>,
    /// A command not answered within this counts as a stuck connection; also the
    /// connect timeout and the longest a caller waits for a reply.
    pub(crate) timeout: Duration,
    /// How long a send waits for every server's count.
    pub(crate) count_deadline: Duration,
    /// How long a process's claim on the values it took stays alive without renewal.
    pub(crate) lease: Duration,
}

impl Config {
    /// Parses `url` (`redis://[user:password@]host:port[/db]`).
    pub(crate) fn parse(url: &str) -> Result<Config, RedisError> {
        let bad = |why: String| RedisError::BadUrl {
            url: url.to_string(),
            why,
        };
        let info = url.into_connection_info().map_err(|e| bad(e.to_string()))?;
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            _ => return Err(bad("only redis://host:port (plain TCP) is supported".into())),
        };
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| bad(format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| bad(format!("{host} resolves to no address")))?;
        let settings = info.redis_settings();
        Ok(Config {
            url: url.to_string(),
            addr,
            db: settings.db(),
            auth: settings
                .password()
                .map(|p| (settings.username().map(str::to_string), p.to_string())),
            timeout: Duration::from_secs(2),
            count_deadline: Duration::from_secs(1),
            lease: Duration::from_secs(5),
        })
    }

    /// The hand-shake every new connection starts with: `AUTH`, `SELECT`.
    pub(crate) fn handshake(&self) -> Vec<Vec<u8>> {
        let mut commands = Vec::new();
        if let Some((user, password)) = &self.auth {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = user {
                auth.arg(user);
            }
            commands.push(auth.arg(password).get_packed_command());
        }
        if self.db != 0 {
            commands.push(redis::cmd("SELECT").arg(self.db).get_packed_command());
        }
        commands
    }
    /// How often a quiet subscriber connection is asked for a `PING`: five timeouts,
    /// from 1 s to 60 s. A link that died without a word (a dropped NAT entry, a
    /// black-holed failover) is then noticed within this plus the timeout.
    pub(crate) fn ping_every(&self) -> Duration {
        self.timeout
            .saturating_mul(5)
            .clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Start-up check, blocking (the caller is not serving yet): connects, runs the
    /// hand-shake and a `PING`, all within the timeout.
    pub(crate) fn check(&self) -> Result<(), RedisError> {
        let unreachable = |why: String| RedisError::Unreachable {
            url: self.url.clone(),
            why,
        };
        let deadline = crate::deadline::from_now(self.timeout);
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout)
            .map_err(|e| unreachable(e.to_string()))?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(|e| unreachable(e.to_string()))?;
        let mut commands = self.handshake();
        commands.push(redis::cmd("PING").get_packed_command());
        for command in &commands {
            crate::sys::send_all_nosignal(stream.as_raw_fd(), command)
                .map_err(|e| unreachable(e.to_string()))?;
        }
        let mut inbuf = Vec::new();
        for _ in &commands {
            let value = loop {
                if let Some(value) = frame::take_value(&mut inbuf).map_err(unreachable)? {
                    break value;
                }
                read_before(&mut stream, deadline, &mut inbuf).map_err(unreachable)?;
            };
            if let Value::ServerError(e) = value {
                return Err(unreachable(e.to_string()));
            }
        }
        Ok(())
    }
}

/// One read into `inbuf` that gives up at `deadline`: each read may only wait for what
/// is left, so a server that sends one byte at a time cannot stretch the wait.
fn read_before(
    stream: &mut TcpStream,
    deadline: Instant,
    inbuf: &mut Vec<u8>,
) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("no answer within the timeout".into());
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk) {
        Ok(0) => Err("the connection was closed".into()),
        Ok(n) => {
            inbuf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let config = Config::parse("redis://:secret@127.0.0.1:6390/3").unwrap();
        assert_eq!(config.addr, "127.0.0.1:6390".parse().unwrap());
        assert_eq!(config.db, 3);
        assert_eq!(config.auth, Some((None, "secret".to_string())));
        assert!(matches!(
            Config::parse("http://127.0.0.1:6379"),
            Err(RedisError::BadUrl { .. })
        ));
        assert!(matches!(
            Config::parse("not a url"),
            Err(RedisError::BadUrl { .. })
        ));
    }
}
