//! Hashed passwords verified off the loop: an Argon2 verification costs
//! tens of milliseconds of CPU, and on one core doing it in the loop would
//! freeze every user during a login storm.
//!
//! The domain asks for a verification ([`Verification`]) when a password
//! is typed for an account whose password is hashed. The server hands it
//! to one worker thread, started at the first such login, through a
//! bounded queue, and stops reading that connection: what it sent after
//! the password waits here. The worker answers through a channel and
//! wakes the poll; the loop gives each answer to the domain
//! ([`Chat::verified`](crate::chat::Chat::verified)), then lets the
//! connection's waiting input and socket be read again. The worker shares
//! nothing mutable with the loop: it gets the given password and the hash,
//! and sends back whether they match.
//!
//! The worker runs at a lower priority than the loop (nice 10 on Linux),
//! so that on a shared core verifying never holds the loop back.
//!
//! A connection has at most one verification at a time (it is not read
//! until the answer), so the queue, as long as `--max-clients`, never
//! fills. An answer for a connection that went away meanwhile (or whose
//! slot a new connection took) is dropped.

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use log::{debug, warn};
use mio::Waker;

use super::Server;
use crate::chat::{SessionId, Verification};
use crate::passwords;

/// The worker's nice value, a lower priority than the poll loop's (0):
/// on a core both share, the loop preempts a verification as soon as it
/// wakes instead of waiting for the verification's time slice to end.
/// With the server pinned to one core, a logged-in user's p99 round trip
/// during 500 hashed logins was 4.2–5.5 ms at nice 0 and 1.8–4.8 ms at
/// nice 10, 1.8–1.9 on a quiet machine (`docs/performance.md`, "Hashed
/// passwords").
#[cfg(target_os = "linux")]
const WORKER_NICE: libc::c_int = 10;

/// A verification on its way to the worker, for connection `key` of
/// `serial`.
struct Job {
    key: usize,
    serial: u64,
    verification: Verification,
}

/// The worker's answer to a [`Job`].
struct Answer {
    key: usize,
    serial: u64,
    session: SessionId,
    epoch: u64,
    matches: bool,
}

/// The worker thread's two ends.
struct Worker {
    jobs: SyncSender<Job>,
    answers: Receiver<Answer>,
}

/// The verifications in progress and the input their connections sent
/// after the password.
#[derive(Default)]
pub struct Verifier {
    worker: Option<Worker>,
    /// Per connection key waiting for an answer: its serial and the input
    /// read after the password, handled once the answer is in.
    waiting: HashMap<usize, (u64, Vec<u8>)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("started", &self.worker.is_some())
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

impl Verifier {
    /// Hands `verification` for connection `key` (of `serial`) to the
    /// worker, starting it if needed (`waker` wakes the loop for each
    /// answer, `capacity` bounds the queue); `rest` is what the connection
    /// sent after the password. Fails if the worker cannot take it.
    fn submit(
        &mut self,
        key: usize,
        serial: u64,
        verification: Verification,
        rest: &[u8],
        waker: &Arc<Waker>,
        capacity: usize,
    ) -> io::Result<()> {
        if self.worker.is_none() {
            self.worker = Some(start(Arc::clone(waker), capacity)?);
        }
        let Some(worker) = &self.worker else {
            return Err(io::Error::other("no verification worker"));
        };
        let job = Job {
            key,
            serial,
            verification,
        };
        match worker.jobs.try_send(job) {
            Ok(()) => {
                self.waiting.insert(key, (serial, rest.to_vec()));
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(io::Error::other("the verification queue is full")),
            Err(TrySendError::Disconnected(_)) => {
                self.worker = None;
                Err(io::Error::other("the verification worker stopped"))
            }
        }
    }

    /// Whether connection `key` waits for an answer.
    #[inline]
    pub fn is_waiting(&self, key: usize) -> bool {
        !self.waiting.is_empty() && self.waiting.contains_key(&key)
    }

    /// Forgets connection `key` (it is being removed).
    pub fn forget(&mut self, key: usize) {
        self.waiting.remove(&key);
    }
}

/// Starts the worker: it verifies each job in turn, sends the answer and
/// wakes the loop, and ends when the server drops its end of the queue.
fn start(waker: Arc<Waker>, capacity: usize) -> io::Result<Worker> {
    let (jobs, inbox) = mpsc::sync_channel::<Job>(capacity.max(1));
    let (outbox, answers) = mpsc::channel::<Answer>();
    thread::Builder::new()
        .name("confab-verify".into())
        .spawn(move || {
            lower_priority();
            for job in inbox {
                let v = job.verification;
                let answer = Answer {
                    key: job.key,
                    serial: job.serial,
                    session: v.session,
                    epoch: v.epoch,
                    matches: passwords::verify_hash(&v.stored, &v.given),
                };
                if outbox.send(answer).is_err() {
                    return;
                }
                if let Err(e) = waker.wake() {
                    warn!("verification worker: cannot wake the loop: {e}");
                }
            }
        })?;
    Ok(Worker { jobs, answers })
}

/// Lowers the calling thread's scheduling priority to [`WORKER_NICE`]
/// (Linux only, where a nice value is per thread); a failure is logged at
/// debug level and changes nothing else.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let Ok(tid) = libc::id_t::try_from(tid) else {
            return;
        };
        // SAFETY: setpriority only reads its arguments.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, WORKER_NICE) } != 0 {
            debug!(
                "verification worker: cannot lower its priority: {}",
                io::Error::last_os_error()
            );
        }
    }
}

impl Server {
    /// Hands a password of connection `key` to the worker (in cluster mode
    /// the node checks it before anything goes to the log); `rest` waits
    /// for the answer. One that cannot be queued closes the connection.
    pub(super) fn submit_verification(
        &mut self,
        key: usize,
        verification: Verification,
        rest: &[u8],
    ) {
        let Some(serial) = self.conns.live(key).map(|conn| conn.serial) else {
            return;
        };
        let capacity = self.config.max_clients;
        let waker = &self.control.waker;
        if let Err(e) = self
            .verifier
            .submit(key, serial, verification, rest, waker, capacity)
        {
            warn!("#{key}: cannot verify its password: {e}");
            self.conns.doom(key);
        }
    }

    /// Takes the domain's request to verify the password connection `key`
    /// just typed: it stops being read, and `rest` (what it sent after the
    /// password) waits for the answer. A request that cannot be queued
    /// closes the connection.
    pub(super) fn start_verifying(&mut self, key: usize, rest: &[u8]) {
        let requests = self.chat.outbox().take_verifications();
        for verification in requests {
            debug_assert_eq!(verification.session.0, key, "one password per line read");
            self.submit_verification(key, verification, rest);
        }
    }

    /// Gives the domain every answer the worker sent, then lets each
    /// answered connection's waiting input and socket be read.
    pub(super) fn take_answers(&mut self, now: Instant) {
        let Some(worker) = &self.verifier.worker else {
            return;
        };
        let answers: Vec<Answer> = worker.answers.try_iter().collect();
        for answer in answers {
            let Some((serial, rest)) = self.verifier.waiting.remove(&answer.key) else {
                continue;
            };
            if serial != answer.serial || !self.conns.is_live(answer.key) {
                debug!("#{}: verification answered after it left", answer.key);
                continue;
            }
            if self.cluster_mode() {
                self.cluster_verified(answer.key, serial, answer.matches, &rest);
                continue;
            }
            self.chat
                .verified(answer.session, answer.epoch, answer.matches, now);
            self.apply_effects();
            self.resume_after_verifying(answer.key, &rest, now);
        }
    }
}
