//! What online soak clients send: a random command every so often, each
//! message recorded with what must become of it before it is queued.

use std::time::Instant;

use super::client::{Block, Phase};
use super::model::{set_bit, Expect, Mail, Ref};
use super::{Soak, GAP_MS};

/// Most bytes of an over-long garbage line beyond the server's limit.
const MAX_GARBAGE_EXCESS: usize = 200_000;

impl Soak {
    pub(super) fn queue(&mut self, i: usize, command: &str) {
        self.clients[i].wire.queue_line(command.as_bytes());
        self.stats.commands += 1;
        self.dirty.mark(i, &mut self.clients[i].wire);
    }

    /// Client `i`'s next command.
    pub(super) fn act(&mut self, i: usize, now: Instant) {
        let gap = self.rng.millis(GAP_MS);
        self.clients[i].next_action = now + gap;
        if self.clients[i].garbage && self.rng.chance(30) {
            self.send_garbage(i);
            return;
        }
        match self.rng.below(100) {
            0..=44 => self.send_direct(i),
            45..=59 => self.send_offline(i),
            60..=64 => self.send_broadcast(i),
            65..=79 => self.queue(i, "whoelse"),
            80..=86 => {
                let seconds = self.rng.below(30);
                self.queue(i, &format!("whoelsesince {seconds}"));
            }
            87..=88 => self.queue(i, "help"),
            89..=93 => self.toggle_block(i),
            _ => self.send_direct(i),
        }
    }

    /// A message to a random steady user online.
    fn send_direct(&mut self, i: usize) {
        let to = self.rng.pick(&self.steady);
        if to == i || self.clients[to].phase != Phase::Online {
            self.queue(i, "whoelse");
            return;
        }
        let expect = self.expect(i, to);
        let (id, text) = self.new_direct(i, to, expect);
        match expect {
            Expect::Must => {
                self.outstanding += 1;
                if self.clients[to].enemy == i {
                    self.clients[to].guard_must.push(Ref::Direct(id));
                }
            }
            Expect::MustNot => self.clients[to].guard_must_not.push(Ref::Direct(id)),
            Expect::Maybe | Expect::Offline(_) => {}
        }
        let command = format!("message {} {text}", self.names[to]);
        self.queue(i, &command);
    }

    /// A message to a random churner the server has offline, if it picks
    /// one that does not block this client; else a message to a steady user.
    fn send_offline(&mut self, i: usize) {
        let to = self.rng.pick(&self.churners);
        let recipient = &self.clients[to];
        let unblocked = recipient.enemy != i || recipient.block == Block::Unblocked;
        if to == i || recipient.phase != Phase::Offline || !recipient.server_offline || !unblocked {
            self.send_direct(i);
            return;
        }
        let (id, text) = self.new_direct(i, to, Expect::Offline(Mail::Sent));
        self.clients[i].waits.push_back((to, id));
        self.clients[to].held += 1;
        let command = format!("message {} {text}", self.names[to]);
        self.queue(i, &command);
    }

    fn send_broadcast(&mut self, i: usize) {
        let text = self.new_broadcast(i);
        let id = self.broadcasts.len() as u32 - 1;
        for to in 0..self.clients.len() {
            if to == i {
                continue;
            }
            let online = self.clients[to].phase == Phase::Online;
            let expect = self.expect(i, to);
            let record = &mut self.broadcasts[id as usize];
            match expect {
                Expect::Must if online => {
                    set_bit(&mut record.must, to, true);
                    self.outstanding += 1;
                    if self.clients[to].enemy == i {
                        self.clients[to].guard_must.push(Ref::Broadcast(id));
                    }
                }
                Expect::MustNot => {
                    record.must_not.push(to as u32);
                    self.clients[to].guard_must_not.push(Ref::Broadcast(id));
                }
                _ => {}
            }
        }
        self.queue(i, &format!("broadcast {text}"));
    }

    fn toggle_block(&mut self, i: usize) {
        let enemy = self.clients[i].enemy;
        let (verb, next) = match self.clients[i].block {
            Block::Unblocked => ("block", Block::Blocking),
            Block::Blocked => ("unblock", Block::Unblocking),
            Block::Blocking | Block::Unblocking => {
                self.queue(i, "whoelse");
                return;
            }
        };
        if next == Block::Blocking {
            // What the enemy sent that has not arrived may now be refused.
            for r in std::mem::take(&mut self.clients[i].guard_must) {
                self.release_must(i, r);
            }
        } else {
            // What the enemy sent that the server has not handled yet may
            // now be delivered.
            for r in std::mem::take(&mut self.clients[i].guard_must_not) {
                self.release_must_not(i, r);
            }
        }
        self.clients[i].block = next;
        let command = format!("{verb} {}", self.names[enemy]);
        self.queue(i, &command);
    }

    fn send_garbage(&mut self, i: usize) {
        let line: Vec<u8> = match self.rng.below(4) {
            0 | 1 => {
                let excess = 1 + self.rng.below(MAX_GARBAGE_EXCESS);
                let mut line = vec![b'g'; self.config.max_line + excess];
                line.push(b'\n');
                line
            }
            2 => b"message user0001 \xff\xfe caf\xc3\n".to_vec(),
            _ => b"\x00\x01whoelse\x07\x1b[2J\n".to_vec(),
        };
        let client = &mut self.clients[i];
        client.wire.queue(&line);
        client.garbage_pending += 1;
        self.stats.garbage_sent += 1;
        self.stats.commands += 1;
        self.dirty.mark(i, &mut self.clients[i].wire);
    }
}
