//! The listener of a server started by a binary upgrade: the socket the old master
//! passed, in place of the one the command line asks for.
//!
//! A preforked master upgraded by `SIGUSR2` starts its program again with the same
//! arguments, its listening socket on fd 3 (`LISTEN_FDS=1`, `LISTEN_PID`, as systemd
//! passes one) and [`READY_FD_VAR`](crate::sys::upgrade::READY_FD_VAR) set. The
//! builder then takes the passed socket instead of binding, provided it is what the
//! program asks for: the same Unix path, or a TCP socket on the same IP and port (port
//! 0 matches any port: the old master picked it). `bind("systemd")` takes it as is. A
//! mismatch (the new binary was given another address) fails the start, and the old
//! master serves on. A socket the program made itself (`listener`) cannot be on the
//! old master's port, so it matches on its IP alone; a warning names both ports when
//! they differ.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use super::{ListenAddr, Listener};

/// What the program asked to listen on.
#[derive(Debug)]
pub(crate) enum Wanted<'a> {
    /// `bind(addr)` (`"systemd"` included).
    Tcp(&'a str),
    /// `bind_unix(path)`.
    Unix(&'a std::path::Path),
    /// `listener(listener)`: the one the program made, dropped for the passed one.
    Listener(&'a Listener),
}

/// The socket the upgrade passed, if it matches `wanted`.
pub(crate) fn take_inherited(wanted: Wanted<'_>) -> io::Result<Listener> {
    let inherited = Listener::from_upgrade()?;
    let have = inherited.local_addr()?;
    let matches = match (&wanted, &have) {
        (Wanted::Tcp("systemd"), _) => true,
        (Wanted::Tcp(addr), ListenAddr::Tcp(have)) => {
            addr.to_socket_addrs()?.any(|want| same_tcp(want, *have))
        }
        (Wanted::Unix(path), ListenAddr::Unix(have)) => path == have,
        (Wanted::Listener(listener), have) => match (listener.local_addr()?, have) {
            // The program's own socket cannot be on the old master's port (that is
            // taken, unless both use SO_REUSEPORT), so it was bound to port 0 or to
            // another port: which, its address cannot tell. The IP must match.
            (ListenAddr::Tcp(want), ListenAddr::Tcp(have)) if want.ip() == have.ip() => {
                if want.port() != have.port() {
                    log::warn!(
                        "started by a binary upgrade: serving on the old master's {have}, \
                         not on {want}, the socket this program made (bind(\"systemd\") or \
                         an address says which port is meant)"
                    );
                }
                true
            }
            (want, have) => want == *have,
        },
        _ => false,
    };
    if !matches {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "started by a binary upgrade with the socket {have}, but asked to listen on \
                 {wanted:?}: the new binary must listen where the old one did"
            ),
        ));
    }
    Ok(match (inherited, wanted) {
        // Bound by the program's own request: its socket file is the program's to
        // remove, as it would be after a bind here.
        (Listener::Unix { listener, path, .. }, Wanted::Unix(_)) => Listener::Unix {
            listener,
            path,
            remove_on_close: true,
        },
        (inherited, _) => inherited,
    })
}

/// The same TCP address, port 0 standing for the one the old master was given.
fn same_tcp(want: SocketAddr, have: SocketAddr) -> bool {
    want.ip() == have.ip() && (want.port() == 0 || want.port() == have.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_matches_the_port_the_old_master_got() {
        let have: SocketAddr = "127.0.0.1:21500".parse().unwrap();
        assert!(same_tcp("127.0.0.1:0".parse().unwrap(), have));
        assert!(same_tcp(have, have));
        assert!(!same_tcp("127.0.0.1:21501".parse().unwrap(), have));
        assert!(!same_tcp("127.0.0.2:21500".parse().unwrap(), have));
    }
}
