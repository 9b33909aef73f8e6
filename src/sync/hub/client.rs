//! A worker's side of the hub: one request, one reply, over a pooled connection.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::Instant;

use crate::conn::Conn;
use crate::sync::hub::protocol::{self, NO_TIMEOUT};
use crate::sync::hub::server::HUB_ADDR;
use crate::sync::lock;

thread_local! {
    /// Idle connections to the hub. Per thread: a connection registered with one
    /// thread's coroutine loop must not be used from another.
    static POOL: RefCell<Vec<Conn>> = const { RefCell::new(Vec::new()) };
}

/// Drops inherited pooled connections (they belong to the parent).
pub(crate) fn forget_pool() {
    POOL.with(|pool| pool.borrow_mut().clear());
}

/// Sends one request and waits for its reply: `(status, payload)`. The wait blocks in
/// the caller's model (thread or coroutine).
pub(crate) fn call(
    op: u8,
    object: u32,
    deadline: Option<Instant>,
    payload: &[u8],
) -> Result<(u8, Vec<u8>), String> {
    let timeout_ms = deadline.map_or(NO_TIMEOUT, |d| {
        d.saturating_duration_since(Instant::now())
            .as_millis()
            .min(NO_TIMEOUT as u128 - 1) as u64
    });
    let frame = protocol::encode_request(op, object, timeout_ms, payload);
    let mut conn = match POOL.with(|pool| pool.borrow_mut().pop()) {
        Some(conn) => conn,
        None => connect()?,
    };
    let reply = exchange(&mut conn, &frame).map_err(|e| format!("hub connection: {e}"))?;
    POOL.with(|pool| pool.borrow_mut().push(conn));
    Ok(reply)
}

fn connect() -> Result<Conn, String> {
    let name = lock(&HUB_ADDR)
        .clone()
        .ok_or("no hub: shared objects are used from a process whose master serves none")?;
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| e.to_string())?;
    let stream = UnixStream::connect_addr(&addr).map_err(|e| format!("connect to hub: {e}"))?;
    Conn::from_unix(stream).map_err(|e| e.to_string())
}

fn exchange(conn: &mut Conn, frame: &[u8]) -> std::io::Result<(u8, Vec<u8>)> {
    conn.write_all(frame)?;
    conn.flush()?;
    // A handler's client that leaves ends the call; dropping this connection (never
    // pooled after an error) makes the hub cancel the wait.
    conn.wait_reply_unless_client_left()?;
    let mut len = [0u8; 4];
    conn.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > protocol::MAX_FRAME {
        return Err(std::io::Error::other("bad reply frame"));
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body)?;
    Ok((body[0], body[1..].to_vec()))
}
