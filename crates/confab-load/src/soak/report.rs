//! What a soak run found, and how it is printed.

use std::fmt;
use std::time::Duration;

use super::client::{Leave, Phase};
use super::model::{bit, Expect};
use super::Soak;
use crate::report::{mib, write_notices};

/// What a soak run found.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// How long traffic was sent.
    pub duration: Duration,
    /// The whole run, setup and wind-down included.
    pub elapsed: Duration,
    /// Clients in all.
    pub clients: usize,
    /// Of which churners.
    pub churners: usize,
    /// Of which steady clients that also send garbage.
    pub garbage_senders: usize,
    /// Commands sent, garbage included.
    pub commands: u64,
    /// `message` commands to online users.
    pub messages: u64,
    /// `message` commands to offline users.
    pub offline_messages: u64,
    /// `broadcast` commands.
    pub broadcasts: u64,
    /// Message lines received (direct, broadcast, mailbox).
    pub received: u64,
    /// Deliveries that had to arrive exactly once: to steady users that
    /// did not block the sender.
    pub tracked: u64,
    /// Of those, received.
    pub tracked_received: u64,
    /// Of those, not received (recipients that failed not counted).
    pub lost: u64,
    /// Required deliveries to recipients the server disconnected.
    pub lost_to_failed: u64,
    /// Deliveries received more than once.
    pub duplicates: u64,
    /// `... the recipient has blocked you` answers.
    pub refused: u64,
    /// `... could not be delivered to some recipients` answers.
    pub refused_broadcasts: u64,
    /// Messages the server stored for offline users.
    pub offline_stored: u64,
    /// Of those, delivered on the recipient's next login.
    pub offline_delivered: u64,
    /// Stored messages missing after a login whose session ended cleanly.
    pub offline_lost: u64,
    /// Stored messages delivered to a connection the client then dropped
    /// unread.
    pub offline_dropped: u64,
    /// Offline messages the server never answered.
    pub offline_unanswered: u64,
    /// `logged in` and `logged out` lines received.
    pub presence: u64,
    /// Lines of `whoelse`, `whoelsesince` and `help` answers.
    pub answers: u64,
    /// Garbage lines sent, and error answers to them.
    pub garbage: (u64, u64),
    /// Completed logins, the first ones included.
    pub logins: u64,
    /// Sessions ended, by way of leaving, with the way's name.
    pub leaves: Vec<(&'static str, u64)>,
    /// Logins abandoned at a prompt.
    pub login_aborts: u64,
    /// Answers that contradict the protocol or the accounting.
    pub violations: u64,
    /// Connections the server closed unexpectedly.
    pub unexpected_closes: u64,
    /// Answers that did not come within the wait limit.
    pub stuck: u64,
    /// The first notices.
    pub notices: Vec<String>,
    /// Notices in all.
    pub notice_count: u64,
    /// The server's resident memory before the first client connected.
    pub rss_start: u64,
    /// The largest resident memory sampled.
    pub rss_peak: u64,
    /// The server's `VmHWM` at the end.
    pub rss_hwm: u64,
    /// Resident memory after every client left.
    pub rss_final: u64,
    /// The server's descriptors before the first client connected.
    pub fds_baseline: usize,
    /// The most sampled.
    pub fds_peak: usize,
    /// With every client logged in, at the end.
    pub fds_connected: usize,
    /// After every client left.
    pub fds_final: usize,
}

impl SoakReport {
    /// Disconnects of every kind: sessions left and logins abandoned.
    pub fn disconnects(&self) -> u64 {
        self.leaves.iter().map(|(_, n)| n).sum::<u64>() + self.login_aborts
    }

    /// Why the run failed; empty if it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let mut check = |bad: bool, what: String| {
            if bad {
                failures.push(what);
            }
        };
        check(self.lost > 0, format!("{} messages lost", self.lost));
        check(
            self.duplicates > 0,
            format!("{} duplicate deliveries", self.duplicates),
        );
        check(
            self.offline_lost > 0,
            format!("{} offline messages lost", self.offline_lost),
        );
        check(
            self.offline_unanswered > 0,
            format!("{} offline messages unanswered", self.offline_unanswered),
        );
        check(
            self.violations > 0,
            format!("{} protocol violations", self.violations),
        );
        check(
            self.unexpected_closes > 0,
            format!("{} unexpected disconnects", self.unexpected_closes),
        );
        check(self.stuck > 0, format!("{} answers never came", self.stuck));
        check(
            self.garbage.0 != self.garbage.1,
            format!(
                "{} garbage lines but {} error answers",
                self.garbage.0, self.garbage.1
            ),
        );
        check(
            self.fds_final > self.fds_baseline,
            format!(
                "descriptors leaked: {} at the end, {} before",
                self.fds_final, self.fds_baseline
            ),
        );
        failures
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "duration      {:.0} s of traffic ({:.0} s in all)",
            self.duration.as_secs_f64(),
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "clients       {} ({} steady, {} of them garbage senders; {} churners)",
            self.clients,
            self.clients - self.churners,
            self.garbage_senders,
            self.churners
        )?;
        writeln!(
            f,
            "sent          {} commands: {} messages, {} to offline users, {} broadcasts",
            self.commands, self.messages, self.offline_messages, self.broadcasts
        )?;
        writeln!(
            f,
            "received      {} message lines, {} presence lines, {} lines of whoelse, whoelsesince, help",
            self.received, self.presence, self.answers
        )?;
        writeln!(
            f,
            "tracked       {} deliveries to users online throughout: {} received, {} lost, {} duplicates",
            self.tracked, self.tracked_received, self.lost, self.duplicates
        )?;
        if self.lost_to_failed > 0 {
            writeln!(
                f,
                "              {} more to users the server disconnected",
                self.lost_to_failed
            )?;
        }
        writeln!(
            f,
            "offline       {} stored, {} delivered on login, {} lost, {} dropped unread by the client, {} unanswered",
            self.offline_stored,
            self.offline_delivered,
            self.offline_lost,
            self.offline_dropped,
            self.offline_unanswered
        )?;
        writeln!(
            f,
            "refused       {} messages, {} broadcasts in part (recipient blocked the sender)",
            self.refused, self.refused_broadcasts
        )?;
        writeln!(
            f,
            "garbage       {} lines, {} error answers",
            self.garbage.0, self.garbage.1
        )?;
        let leaves: Vec<String> = self
            .leaves
            .iter()
            .map(|(name, n)| format!("{n} {name}"))
            .collect();
        writeln!(
            f,
            "disconnects   {}: {}, {} logins abandoned; {} logins",
            self.disconnects(),
            leaves.join(", "),
            self.login_aborts,
            self.logins
        )?;
        writeln!(
            f,
            "problems      {} violations, {} unexpected disconnects, {} stuck",
            self.violations, self.unexpected_closes, self.stuck
        )?;
        writeln!(
            f,
            "server RSS    {} at start, peak {} (VmHWM {}), {} at the end",
            mib(self.rss_start),
            mib(self.rss_peak),
            mib(self.rss_hwm),
            mib(self.rss_final)
        )?;
        writeln!(
            f,
            "server fds    {} at start, peak {}, {} with all connected, {} at the end",
            self.fds_baseline, self.fds_peak, self.fds_connected, self.fds_final
        )?;
        write_notices(f, "notices       ", self.notice_count, &self.notices)
    }
}

impl Soak {
    pub(super) fn report(&self) -> SoakReport {
        let failed: Vec<bool> = self
            .clients
            .iter()
            .map(|c| c.phase == Phase::Failed)
            .collect();
        let (mut tracked, mut lost, mut lost_to_failed) = (0, 0, 0);
        let (mut messages, mut offline_messages) = (0, 0);
        for record in &self.directs {
            match record.expect {
                Expect::Offline(_) => offline_messages += 1,
                Expect::Must => {
                    messages += 1;
                    tracked += 1;
                    if record.got == 0 {
                        if failed[record.to as usize] {
                            lost_to_failed += 1;
                        } else {
                            lost += 1;
                        }
                    }
                }
                Expect::MustNot | Expect::Maybe => messages += 1,
            }
        }
        for record in &self.broadcasts {
            for (to, &is_failed) in failed.iter().enumerate() {
                if bit(&record.must, to) {
                    tracked += 1;
                    if !bit(&record.got, to) {
                        if is_failed {
                            lost_to_failed += 1;
                        } else {
                            lost += 1;
                        }
                    }
                }
            }
        }
        let s = &self.stats;
        SoakReport {
            duration: Duration::ZERO,
            elapsed: self.started.elapsed(),
            clients: self.clients.len(),
            churners: self.churners.len(),
            garbage_senders: self.count(|c| c.garbage),
            commands: s.commands,
            messages,
            offline_messages,
            broadcasts: self.broadcasts.len() as u64,
            received: s.received,
            tracked,
            tracked_received: s.received_tracked,
            lost,
            lost_to_failed,
            duplicates: s.duplicates,
            refused: s.refused,
            refused_broadcasts: s.refused_broadcasts,
            offline_stored: s.offline_stored,
            offline_delivered: s.offline_delivered,
            offline_lost: s.offline_lost,
            offline_dropped: s.offline_dropped,
            offline_unanswered: s.offline_unanswered,
            presence: s.presence,
            answers: s.info,
            garbage: (s.garbage_sent, s.garbage_answered),
            logins: s.logins,
            leaves: Leave::ALL
                .iter()
                .zip(s.leaves)
                .map(|(l, n)| (l.name(), n))
                .collect(),
            login_aborts: s.login_aborts,
            violations: s.violations,
            unexpected_closes: s.unexpected_closes,
            stuck: s.stuck,
            notices: s.notices.clone(),
            notice_count: s.notice_count,
            rss_peak: self.rss_peak,
            fds_peak: self.fds_peak,
            ..SoakReport::default()
        }
    }
}
