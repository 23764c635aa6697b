//! A TCP proxy on `127.0.0.1` in front of a server ([`TcpProxy`]), which a
//! test can make drop the server's replies, drop everything (a
//! partition) or cut every connection, as a network would: a request that
//! reaches the server whose answer is lost.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// What the proxy's threads share with the test.
#[derive(Default)]
struct Shared {
    /// Whether bytes from the server are dropped instead of passed on.
    hold_replies: AtomicBool,
    /// Whether bytes both ways are dropped (see [`TcpProxy::partition`]).
    partitioned: AtomicBool,
    /// Whether the proxy is dropped, so that its threads end.
    closed: AtomicBool,
    /// Both sockets of every connection, to cut them.
    sockets: Mutex<Vec<TcpStream>>,
}

/// A TCP proxy from a free port of `127.0.0.1` to `upstream`; each accepted
/// connection gets one of its own to `upstream`. Dropping it cuts every
/// connection and stops accepting.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream`; panics if it cannot listen.
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.closed.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(1))
                else {
                    continue;
                };
                connect(client, server, &accepting);
            }
        });
        TcpProxy { addr, shared }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, drops what the server sends (`true`) or passes it on
    /// again (`false`); what the clients send still reaches the server.
    pub fn hold_replies(&self, hold: bool) {
        self.shared.hold_replies.store(hold, Ordering::SeqCst);
    }

    /// Makes the proxy a black hole (`true`): everything either side sends
    /// is dropped, on every connection, new ones too, as across a network
    /// partition; `false` ends the partition and cuts every connection
    /// (their streams lost bytes), so that clients connect afresh.
    pub fn partition(&self, on: bool) {
        self.shared.partitioned.store(on, Ordering::SeqCst);
        if !on {
            self.cut();
        }
    }

    /// Cuts every connection made so far, both ways; new ones are
    /// accepted as before.
    pub fn cut(&self) {
        let sockets = std::mem::take(
            &mut *self
                .shared
                .sockets
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for socket in sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Pumps `client` and `server` into each other on two threads, keeping
/// both sockets for [`TcpProxy::cut`].
fn connect(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) {
    let clones = (client.try_clone(), server.try_clone());
    let (Ok(client_in), Ok(server_in)) = clones else {
        return;
    };
    {
        let mut sockets = shared
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for socket in [&client, &server] {
            if let Ok(socket) = socket.try_clone() {
                sockets.push(socket);
            }
        }
    }
    let upstream = shared.clone();
    thread::spawn(move || pump(client_in, server, &upstream, false));
    let downstream = shared.clone();
    thread::spawn(move || pump(server_in, client, &downstream, true));
}

/// Copies `from` into `to` until either ends; bytes from the server
/// (`replies`) are dropped while the replies are held.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, replies: bool) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let held = replies && shared.hold_replies.load(Ordering::SeqCst);
        if held || shared.partitioned.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
