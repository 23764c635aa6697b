//! A connection's stream: the plain socket, a TLS session over it, or a
//! WebSocket over either. The links of the server, the client and the load
//! engine hold a [`Stream`], so that one listener may speak TLS, another
//! plaintext and a third WebSocket while everything above the link stays
//! the same.

use std::io;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::link::Transport;
use super::tls::TlsStream;
use super::web::WebStream;

/// A plain socket, a TLS session over one, or a WebSocket over either.
#[derive(Debug)]
pub enum Stream {
    /// Plaintext: the protocol's bytes are the socket's.
    Plain(TcpStream),
    /// TLS (boxed: a session is a few hundred bytes, and most servers
    /// have plain connections too).
    Tls(Box<TlsStream>),
    /// A WebSocket (raw until its handshake is done) over a plain or TLS
    /// stream (boxed: it holds tungstenite's buffers).
    Web(Box<WebStream<Stream>>),
}

impl Stream {
    /// The socket, for its options.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(socket) => socket,
            Stream::Tls(tls) => tls.socket(),
            Stream::Web(web) => web.inner().socket(),
        }
    }

    /// The TLS session, if this is one.
    pub fn tls(&self) -> Option<&TlsStream> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => Some(tls),
            Stream::Web(web) => web.inner().tls(),
        }
    }

    /// The WebSocket, if this is one.
    pub fn web_mut(&mut self) -> Option<&mut WebStream<Stream>> {
        match self {
            Stream::Web(web) => Some(web),
            _ => None,
        }
    }

    /// Whether a layer (TLS, WebSocket) sits over the socket, which may
    /// have bytes of its own to write after a read.
    pub fn is_layered(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }
}

impl From<TcpStream> for Stream {
    fn from(socket: TcpStream) -> Stream {
        Stream::Plain(socket)
    }
}

impl From<TlsStream> for Stream {
    fn from(tls: TlsStream) -> Stream {
        Stream::Tls(Box::new(tls))
    }
}

impl From<WebStream<Stream>> for Stream {
    fn from(web: WebStream<Stream>) -> Stream {
        Stream::Web(Box::new(web))
    }
}

impl Transport for Stream {
    #[inline]
    fn read_bytes(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.read_bytes(buf),
            Stream::Tls(tls) => tls.read_bytes(buf),
            Stream::Web(web) => web.read_bytes(buf),
        }
    }

    #[inline]
    fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.write_bytes(bytes),
            Stream::Tls(tls) => tls.write_bytes(bytes),
            Stream::Web(web) => web.write_bytes(bytes),
        }
    }

    #[inline]
    fn flush_layer(&mut self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) => Ok(false),
            Stream::Tls(tls) => tls.flush_layer(),
            Stream::Web(web) => web.flush_layer(),
        }
    }

    #[inline]
    fn layer_pending(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls.layer_pending(),
            Stream::Web(web) => web.layer_pending(),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.shutdown_write(),
            Stream::Tls(tls) => tls.shutdown_write(),
            Stream::Web(web) => web.shutdown_write(),
        }
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.register(registry, token, interests),
            Stream::Tls(tls) => tls.register(registry, token, interests),
            Stream::Web(web) => web.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.reregister(registry, token, interests),
            Stream::Tls(tls) => tls.reregister(registry, token, interests),
            Stream::Web(web) => web.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.deregister(registry),
            Stream::Tls(tls) => tls.deregister(registry),
            Stream::Web(web) => web.deregister(registry),
        }
    }
}
