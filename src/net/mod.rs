//! Bytes on connections, below the protocol: cutting input into bounded
//! lines ([`lines`]), the output waiting for a socket ([`outbuf`]), the
//! one write path every non-blocking connection shares ([`link`]), and
//! what it writes to: a plain socket, a TLS session over one, or a
//! WebSocket over either ([`stream`], [`tls`], [`web`]), and which
//! certificates a client trusts ([`trust`]).

pub mod lines;
pub mod link;
pub mod outbuf;
pub mod stream;
pub mod tls;
pub mod trust;
pub mod web;

/// A connected pair over loopback for the layers' tests: the accepting
/// side non-blocking with a send buffer of `send_buffer` bytes, the other
/// side blocking with reads that wait at most 10 ms.
#[cfg(test)]
fn socket_pair(send_buffer: usize) -> (mio::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let socket =
        std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(10)))
        .expect("read timeout");
    let (accepted, _) = listener.accept().expect("accept");
    socket2::SockRef::from(&accepted)
        .set_send_buffer_size(send_buffer)
        .expect("send buffer");
    accepted.set_nonblocking(true).expect("nonblocking");
    (mio::net::TcpStream::from_std(accepted), socket)
}
