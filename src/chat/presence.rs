//! Who is online and who left recently: the `logged in` / `logged out`
//! announcements, and `whoelse` and `whoelsesince`.
//!
//! The users online are one small array ([`Online`]) with what a fan-out
//! needs of each, so that announcing to thousands of users reads that
//! array and looks at a block list only if there is one. Users who left
//! are kept by when they left, so that `whoelsesince` reads the users
//! online and the recent departures, never every account.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::users::UserId;
use super::{Chat, SessionId};
use crate::protocol::{self, AboutUser, Reply};

/// One logged-in user, with what a broadcast or a presence line needs of
/// them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Online {
    /// Who.
    pub(super) user: UserId,
    /// Where they are logged in.
    pub(super) session: SessionId,
    /// The user's block list is not empty.
    pub(super) blocks_anyone: bool,
}

/// The users online and those who left.
#[derive(Debug, Default)]
pub(super) struct Presence {
    /// The users logged in now, in no particular order.
    pub(super) online: Vec<Online>,
    /// Users who have left, by when their last session ended: what
    /// `whoelsesince` reads besides `online`.
    pub(super) departed: BTreeSet<(Instant, UserId)>,
}

impl Chat {
    /// Puts `user`, just logged in on `sid`, on the online list.
    pub(super) fn join(&mut self, user: UserId, sid: SessionId) {
        let slot = self.presence.online.len();
        let account = &mut self.users[user];
        self.presence.online.push(Online {
            user,
            session: sid,
            blocks_anyone: !account.blocked.is_empty(),
        });
        account.session = Some(sid);
        account.online_slot = slot;
    }

    /// Takes `user` off the online list, their last session having ended
    /// at `now`.
    pub(super) fn leave(&mut self, user: UserId, now: Instant) {
        let online = &mut self.presence.online;
        let slot = self.users[user].online_slot;
        online.swap_remove(slot);
        if let Some(moved) = online.get(slot) {
            self.users[moved.user].online_slot = slot;
        }
        let account = &mut self.users[user];
        account.session = None;
        let departed = &mut self.presence.departed;
        if let Some(left) = account.last_seen.replace(now) {
            departed.remove(&(left, user));
        }
        departed.insert((now, user));
    }

    /// Keeps `blocks_anyone` of an online user in step with their block
    /// list.
    pub(super) fn note_block_list(&mut self, user: UserId) {
        let account = &self.users[user];
        if account.session.is_some() {
            self.presence.online[account.online_slot].blocks_anyone = !account.blocked.is_empty();
        }
    }

    /// Tells every other online user, except those `subject` blocked, the
    /// presence line `shape` gives for `subject` (logged in or out).
    pub(super) fn announce(&mut self, subject: UserId, shape: AboutUser) {
        let subject_user = &self.users[subject];
        let range = self.outbox.render(shape(&subject_user.name));
        let subject_blocks = !subject_user.blocked.is_empty();
        for observer in &self.presence.online {
            if observer.user == subject
                || (subject_blocks && subject_user.has_blocked(observer.user))
            {
                continue;
            }
            self.outbox.notice(observer.session, range.clone());
        }
    }

    /// `whoelse` (no window) and `whoelsesince`: users online now or
    /// whose last session ended less than `window` ago, sorted, without
    /// `me` and without users who blocked `me`.
    /// Reads the users online and, for a window, those who left within it
    /// (`departed` is ordered by departure), never every account.
    pub(super) fn who_else(
        &mut self,
        sid: SessionId,
        me: UserId,
        since: Option<Duration>,
        now: Instant,
    ) {
        let window = since.unwrap_or(Duration::ZERO);
        let online = self.presence.online.iter().map(|o| o.user);
        let recent = self
            .presence
            .departed
            .iter()
            .rev()
            .take_while(|&&(left, _)| now.saturating_duration_since(left) < window)
            .map(|&(_, user)| user)
            .filter(|&user| self.users[user].session.is_none());
        let mut names: Vec<&str> = online
            .chain(recent)
            .filter(|&user| user != me)
            .map(|user| &self.users[user])
            .filter(|user| !user.has_blocked(me))
            .map(|user| &*user.name)
            .collect();
        if names.is_empty() {
            // `whoelsesince 0` is still `whoelsesince`: it has its own reply.
            let none = match since {
                None => protocol::NO_OTHER_USERS,
                Some(_) => protocol::NO_OTHER_USERS_SINCE,
            };
            return self.outbox.line(sid, none);
        }
        names.sort_unstable();
        for user in names {
            self.outbox.reply(sid, Reply::Listed { user });
        }
    }
}
