//! The listening socket: bound with the listen backlog asked for
//! (`--backlog`), so that a login storm's handshakes wait in the kernel
//! instead of being dropped, and told when the kernel holds fewer.

use std::fs;
use std::io;
use std::net::SocketAddr;

use log::warn;
use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// Where Linux says how long a listen backlog it allows.
const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";

/// Binds a non-blocking listener on `addr` whose backlog holds `backlog`
/// handshakes (the kernel clamps it to `somaxconn`, which is logged).
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    let asked = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(asked)?;
    socket.set_nonblocking(true)?;
    if let Some(max) = kernel_limit().filter(|&max| max < backlog) {
        warn!("listen backlog {backlog} clamped to {max} by {SOMAXCONN}");
    }
    Ok(TcpListener::from_std(socket.into()))
}

/// The kernel's limit on a listen backlog, if it says.
fn kernel_limit() -> Option<u32> {
    fs::read_to_string(SOMAXCONN).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_takes_more_handshakes_than_std_would_before_accepting() {
        let listener = bind("127.0.0.1:0".parse().expect("addr"), 1024).expect("bind");
        let addr = listener.local_addr().expect("addr");
        // std listens with a backlog of 128: past it, handshakes stall.
        let clients: Vec<_> = (0..300)
            .map(|_| std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)))
            .collect();
        let connected = clients.iter().filter(|c| c.is_ok()).count();
        assert_eq!(connected, 300, "handshakes completed without an accept");
    }
}
