//! [`IntoBindAddr`]: what [`ServerBuilder::bind`](super::ServerBuilder::bind) accepts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A TCP address to listen on: a string (`"127.0.0.1:8080"`, `"localhost:80"`,
/// `"systemd"`), a [`SocketAddr`], or an `(ip, port)` / `(host, port)` pair.
///
/// ```
/// use std::net::{Ipv4Addr, SocketAddr};
/// use mixserve::{Iterative, Server};
///
/// let by_string = Server::builder(Iterative::new()).bind("127.0.0.1:0");
/// let by_addr = Server::builder(Iterative::new()).bind(SocketAddr::from(([127, 0, 0, 1], 0)));
/// let by_pair = Server::builder(Iterative::new()).bind((Ipv4Addr::LOCALHOST, 0));
/// let by_host = Server::builder(Iterative::new()).bind(("localhost", 0));
/// ```
pub trait IntoBindAddr {
    /// The address in the form the builder resolves (`host:port`, IPv6 in brackets).
    fn into_bind_addr(self) -> String;
}

impl IntoBindAddr for &str {
    fn into_bind_addr(self) -> String {
        self.to_owned()
    }
}

impl IntoBindAddr for String {
    fn into_bind_addr(self) -> String {
        self
    }
}

impl IntoBindAddr for &String {
    fn into_bind_addr(self) -> String {
        self.clone()
    }
}

impl IntoBindAddr for SocketAddr {
    fn into_bind_addr(self) -> String {
        self.to_string()
    }
}

impl IntoBindAddr for SocketAddrV4 {
    fn into_bind_addr(self) -> String {
        self.to_string()
    }
}

impl IntoBindAddr for SocketAddrV6 {
    fn into_bind_addr(self) -> String {
        self.to_string()
    }
}

impl IntoBindAddr for (IpAddr, u16) {
    fn into_bind_addr(self) -> String {
        SocketAddr::from(self).to_string()
    }
}

impl IntoBindAddr for (Ipv4Addr, u16) {
    fn into_bind_addr(self) -> String {
        SocketAddr::from(self).to_string()
    }
}

impl IntoBindAddr for (Ipv6Addr, u16) {
    fn into_bind_addr(self) -> String {
        SocketAddr::from(self).to_string()
    }
}

impl IntoBindAddr for ([u8; 4], u16) {
    fn into_bind_addr(self) -> String {
        SocketAddr::from(self).to_string()
    }
}

impl IntoBindAddr for (&str, u16) {
    fn into_bind_addr(self) -> String {
        match self.0.parse::<Ipv6Addr>() {
            Ok(ip) => SocketAddr::from((ip, self.1)).to_string(),
            Err(_) => format!("{}:{}", self.0, self.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_that_resolve() {
        assert_eq!("127.0.0.1:80".into_bind_addr(), "127.0.0.1:80");
        assert_eq!((Ipv6Addr::LOCALHOST, 8).into_bind_addr(), "[::1]:8");
        assert_eq!(("::1", 8).into_bind_addr(), "[::1]:8");
        assert_eq!(("localhost", 8).into_bind_addr(), "localhost:8");
        assert_eq!(([10, 0, 0, 1], 9).into_bind_addr(), "10.0.0.1:9");
    }
}
