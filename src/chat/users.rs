//! The accounts the domain knows, by id and by name, and what it keeps
//! about each for the life of the server.
//!
//! A user is interned as a [`UserId`] (its index in file order), so that
//! block checks and presence lists compare integers, not strings. Besides
//! the accounts of the credentials file there may be users kept only for
//! their records: accounts that were removed from the file but still have
//! mail, blocks or a ban on disk. They cannot log in and commands do not
//! see them ([`Users::account`]) until they are back.

use std::collections::HashMap;
use std::ops::{Index, IndexMut};
use std::time::Instant;

use super::mailbox::Mailbox;
use super::SessionId;
use crate::credentials::Account;

/// Index of a user in [`Users`].
pub(super) type UserId = u32;

/// Per-user state, kept for the life of the server.
#[derive(Debug)]
pub(super) struct User {
    /// The username.
    pub(super) name: Box<str>,
    /// `None` for an account that is no longer in the credentials file but
    /// still has records: it cannot log in and commands do not see it.
    pub(super) password: Option<Box<str>>,
    /// The session this user is logged in on.
    pub(super) session: Option<SessionId>,
    /// Position in the online list while logged in.
    pub(super) online_slot: usize,
    /// Consecutive wrong passwords since the last login or ban.
    pub(super) failures: u8,
    /// Set while the username is banned.
    pub(super) banned_until: Option<Instant>,
    /// Users this user blocked, sorted.
    pub(super) blocked: Vec<UserId>,
    /// When this user's last session ended.
    pub(super) last_seen: Option<Instant>,
    /// Messages that arrived while offline.
    pub(super) mailbox: Mailbox,
}

impl User {
    /// A user with nothing kept about it yet; `password` as for
    /// [`User::password`].
    pub(super) fn new(name: Box<str>, password: Option<Box<str>>) -> User {
        User {
            name,
            password,
            session: None,
            online_slot: 0,
            failures: 0,
            banned_until: None,
            blocked: Vec::new(),
            last_seen: None,
            mailbox: Mailbox::default(),
        }
    }

    /// Whether this user blocked `other`.
    #[inline]
    pub(super) fn has_blocked(&self, other: UserId) -> bool {
        self.blocked.binary_search(&other).is_ok()
    }
}

/// Every user, indexed by [`UserId`] and found by name.
#[derive(Debug)]
pub(super) struct Users {
    list: Vec<User>,
    /// Every message looks its recipient up here, so it hashes with
    /// foldhash rather than SipHash: its keys come from the credentials
    /// file and the data directory, never from a client, so there is no
    /// flood of colliding keys to resist.
    by_name: HashMap<Box<str>, UserId, foldhash::fast::RandomState>,
}

impl Users {
    /// The accounts of the credentials file (usernames unique, as
    /// `credentials::parse` guarantees), in file order.
    pub(super) fn new(accounts: Vec<Account>) -> Users {
        let list: Vec<User> = accounts
            .into_iter()
            .map(|a| User::new(a.username.into(), Some(a.password.into())))
            .collect();
        let by_name = list
            .iter()
            .enumerate()
            .map(|(id, u)| (u.name.clone(), id as UserId))
            .collect();
        Users { list, by_name }
    }

    /// These users, in id order; `None` if two have the same name.
    pub(super) fn restored(list: Vec<User>) -> Option<Users> {
        let mut by_name = HashMap::with_capacity_and_hasher(list.len(), Default::default());
        for (id, user) in list.iter().enumerate() {
            if by_name.insert(user.name.clone(), id as UserId).is_some() {
                return None;
            }
        }
        Some(Users { list, by_name })
    }

    /// How many users there are, accounts and those kept for their
    /// records.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// The id of `name`, an account or one kept only for its records.
    pub(super) fn id(&self, name: &str) -> Option<UserId> {
        self.by_name.get(name).copied()
    }

    /// The id of `name` if it is an account of the credentials file: the
    /// only users logins and commands know.
    pub(super) fn account(&self, name: &str) -> Option<UserId> {
        self.id(name).filter(|&u| self.is_account(u))
    }

    /// Whether `user` is an account of the credentials file.
    pub(super) fn is_account(&self, user: UserId) -> bool {
        self[user].password.is_some()
    }

    /// The id of `name`, adding it as a user kept only for its records if
    /// it is not known.
    pub(super) fn id_or_removed(&mut self, name: &str) -> UserId {
        if let Some(id) = self.id(name) {
            return id;
        }
        let id = self.list.len() as UserId;
        self.by_name.insert(name.into(), id);
        self.list.push(User::new(name.into(), None));
        id
    }

    /// Makes `accounts` the accounts of the credentials file: their
    /// passwords are set (a new one applies from the next login), users
    /// not known before are added, and accounts no longer among them keep
    /// only their records. Returns the ids of those removed.
    pub(super) fn reload(&mut self, accounts: Vec<Account>) -> Vec<UserId> {
        let mut listed = vec![false; self.list.len()];
        for account in accounts {
            let id = self.id_or_removed(&account.username);
            self.list[id as usize].password = Some(account.password.into());
            if let Some(seen) = listed.get_mut(id as usize) {
                *seen = true;
            }
        }
        let mut removed = Vec::new();
        for (id, seen) in listed.into_iter().enumerate() {
            let user = &mut self.list[id];
            if !seen && user.password.take().is_some() {
                removed.push(id as UserId);
            }
        }
        removed
    }

    /// The user at `index` in id order, if there is one.
    pub(super) fn get(&self, index: usize) -> Option<&User> {
        self.list.get(index)
    }

    /// Every user, in id order.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = &User> + '_ {
        self.list.iter()
    }
}

impl Index<UserId> for Users {
    type Output = User;

    #[inline]
    fn index(&self, id: UserId) -> &User {
        &self.list[id as usize]
    }
}

impl IndexMut<UserId> for Users {
    #[inline]
    fn index_mut(&mut self, id: UserId) -> &mut User {
        &mut self.list[id as usize]
    }
}
