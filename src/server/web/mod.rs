//! The web port (`--web-port`): the page for browsers, and WebSocket
//! sessions that are chat sessions like any other (see `docs/web.md`).
//!
//! A web connection is accepted and admitted like any other (the server's
//! `--max-clients`, the address's `--max-per-ip`), over TLS if the server
//! speaks it, and its stream is a [`WebStream`](crate::net::web::WebStream),
//! raw for now. Until it has made its one HTTP request it is only a
//! connection with an [`HttpStage`]: no session of the domain, nothing it
//! sends is a line. The request must be complete within [`HTTP_TIMEOUT`]
//! (or the login timeout if that is shorter), in at most
//! [`http::MAX_HEAD`] bytes; it is judged by [`http::judge`]. Every answer
//! but `101` is written and the connection closed, as the domain closes
//! a session. After `101` the stream frames, the stage is dropped, and the
//! domain is told of a new connection, which asks for the username: from
//! then on it is a session like a TCP one, its lines in text messages.

pub mod http;
pub mod page;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use log::debug;
use mio::net::TcpListener;

use super::{LoopTimer, Server};
use crate::chat::SessionId;
use http::{Site, Status, Verdict, MAX_HEAD};
use page::Page;

/// The longest a web connection may take to send its request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The web listener and what it serves.
#[derive(Debug)]
pub struct Web {
    /// The listening socket.
    pub listener: TcpListener,
    /// What requests are judged against.
    site: Site,
    /// The whole answer to `GET /`.
    page: Vec<u8>,
    /// The length of its head, the answer to `HEAD /`.
    page_head: usize,
}

impl Web {
    /// Serves the embedded page on `listener`, over TLS if `tls`,
    /// allowing `origins` besides the page's own.
    pub fn new(listener: TcpListener, tls: bool, origins: Vec<String>) -> Result<Web, String> {
        let page = Page::embedded()?;
        let (page, page_head) = http::page_answer(&page.html, &page.csp);
        Ok(Web {
            listener,
            site: Site {
                scheme: if tls { "https" } else { "http" },
                origins,
            },
            page,
            page_head,
        })
    }
}

/// A web connection before its upgrade: the request read so far and where
/// it comes from.
#[derive(Debug)]
pub struct HttpStage {
    /// The bytes of the request head read so far (at most one more than
    /// [`MAX_HEAD`]).
    head: Vec<u8>,
    /// The peer's address, for the session it may become.
    ip: IpAddr,
}

impl HttpStage {
    /// Nothing read yet from a peer at `ip`.
    pub fn new(ip: IpAddr) -> HttpStage {
        HttpStage {
            head: Vec::new(),
            ip,
        }
    }
}

impl Server {
    /// How long a web connection may take to make its request: at most
    /// [`HTTP_TIMEOUT`], at most the login timeout.
    pub(super) fn http_timeout(&self) -> Duration {
        HTTP_TIMEOUT.min(self.config.chat.login_timeout)
    }

    /// Reads the request of web connection `key` until it is complete (then
    /// answers it), the socket would block, or it breaks.
    pub(super) fn read_http(&mut self, key: usize, now: Instant) {
        let Some(web) = self.web.as_ref() else {
            return;
        };
        loop {
            let Some(conn) = self.conns.live(key) else {
                return;
            };
            if conn.closing {
                return;
            }
            let Some(stage) = conn.http.as_deref_mut() else {
                return;
            };
            let room = MAX_HEAD + 1 - stage.head.len().min(MAX_HEAD);
            match conn.link.read(&mut self.input.scratch[..room]) {
                Ok(0) => {
                    debug!("#{key}: closed before its request was complete");
                    self.conns.doom(key);
                    return;
                }
                Ok(n) => {
                    stage.head.extend_from_slice(&self.input.scratch[..n]);
                    match http::judge(&stage.head, &web.site) {
                        Verdict::Partial => {}
                        verdict => return self.answer(key, verdict, now),
                    }
                }
                Err(e) => return self.read_stopped(key, e),
            }
        }
    }

    /// Carries out the verdict on `key`'s request.
    fn answer(&mut self, key: usize, verdict: Verdict, now: Instant) {
        let Some(web) = self.web.as_ref() else {
            return;
        };
        let Some(conn) = self.conns.live(key) else {
            return;
        };
        let answer = match verdict {
            Verdict::Partial => return,
            Verdict::Page { head_only: false } => &web.page[..],
            Verdict::Page { head_only: true } => &web.page[..web.page_head],
            Verdict::Refuse(status) => {
                debug!("#{key}: request refused: {status:?}");
                conn.queue(&status.answer(None));
                return self.close_after_flush(key);
            }
            Verdict::Upgrade { accept } => return self.upgrade(key, &accept, now),
        };
        conn.queue(answer);
        self.close_after_flush(key);
    }

    /// Makes `key` a WebSocket and a new session of the domain.
    fn upgrade(&mut self, key: usize, accept: &str, now: Instant) {
        let Some(conn) = self.conns.live(key) else {
            return;
        };
        let (Some(stage), Some(web)) = (conn.http.take(), conn.link.transport_mut().web_mut())
        else {
            return;
        };
        web.open(&http::switching(accept));
        let trusted = conn.address().is_none();
        debug!("#{key}: WebSocket open");
        self.conns.mark_dirty(key);
        if self.cluster_mode() {
            return self.cluster_connect(key, stage.ip, trusted, true);
        }
        let sid = SessionId(key);
        self.chat.connect(sid, stage.ip, trusted, now);
        self.chat.without_private(sid);
        self.apply_effects();
    }

    /// A web connection that has not made its request in time is answered
    /// `408` and closed.
    pub(super) fn http_expired(&mut self, key: usize, serial: u64) {
        let Some(conn) = self.conns.live(key).filter(|c| c.serial == serial) else {
            return;
        };
        if conn.http.is_none() || conn.closing {
            return;
        }
        debug!("#{key}: no request in time");
        conn.queue(&Status::Timeout.answer(None));
        self.close_after_flush(key);
    }

    /// Arms the request deadline of the new web connection `key`.
    pub(super) fn arm_http_deadline(&mut self, key: usize, serial: u64, now: Instant) {
        let due = now + self.http_timeout();
        self.timers
            .deadlines
            .arm(due, LoopTimer::HttpDeadline { key, serial });
    }
}
