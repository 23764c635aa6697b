//! The storm workload's check: every client of a login storm heard of
//! exactly the logins that completed after its own, in the server's order,
//! each once.
//!
//! The server announces each login to everyone online at that moment, so
//! the logins have one order, the order of the announcements: the first
//! client to log in hears of every other one in that order, and every
//! client's list must be exactly the part of that order after its own
//! name. [`check`] takes the order from the lists themselves: a login's
//! place is how many clients heard of it (nobody heard of the first, every
//! other client of the last). In a clean run those counts are 0 to n − 1,
//! each once, and every list matches; any fault (a line lost, heard twice,
//! out of order, or of a login before the hearer's own) makes one of the
//! counts of [`StormCheck`] non-zero. In a run with faults the counts say
//! roughly where: a lost line may also move one login a place.

use std::cmp::Reverse;

/// What [`check`] found, in announcements (`<user> logged in` lines).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StormCheck {
    /// What the clients should have heard: n(n − 1)/2 for n logins.
    pub(crate) expected: u64,
    /// Expected announcements heard, each counted once.
    pub(crate) delivered: u64,
    /// Expected announcements never heard.
    pub(crate) lost: u64,
    /// Announcements heard again after the first time.
    pub(crate) duplicated: u64,
    /// Announcements heard after that of a later login, or of a login that
    /// did not come after the hearer's own (its own included).
    pub(crate) misordered: u64,
}

/// Checks `heard`: per client, the clients (by index into `heard`) whose
/// logins it heard announced, in the order it heard them. Every client of
/// `heard` logged in.
pub(crate) fn check(heard: &[Vec<u32>]) -> StormCheck {
    let n = heard.len();
    let index = |x: u32| usize::try_from(x).ok().filter(|&x| x < n);
    // Per hearer, which logins it has heard of so far; cleared after each.
    let mut marked = vec![false; n];
    let mut hearers = vec![0usize; n];
    for list in heard {
        for x in list.iter().filter_map(|&x| index(x)) {
            if !std::mem::replace(&mut marked[x], true) {
                hearers[x] += 1;
            }
        }
        list.iter()
            .filter_map(|&x| index(x))
            .for_each(|x| marked[x] = false);
    }
    // The server's order: fewest hearers first. Ties only come with
    // faults; the client that heard more is then taken as the earlier.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&c| (hearers[c], Reverse(heard[c].len()), c));
    let mut place = vec![0usize; n];
    for (at, &c) in order.iter().enumerate() {
        place[c] = at;
    }
    let mut found = StormCheck {
        expected: (n as u64) * (n as u64).saturating_sub(1) / 2,
        ..StormCheck::default()
    };
    for (c, list) in heard.iter().enumerate() {
        let own = place[c];
        let mut delivered = 0u64;
        let mut latest = own;
        for &x in list {
            let Some(x) = index(x).filter(|&x| place[x] > own) else {
                found.misordered += 1;
                continue;
            };
            if std::mem::replace(&mut marked[x], true) {
                found.duplicated += 1;
                continue;
            }
            delivered += 1;
            if place[x] < latest {
                found.misordered += 1;
            } else {
                latest = place[x];
            }
        }
        list.iter()
            .filter_map(|&x| index(x))
            .for_each(|x| marked[x] = false);
        found.delivered += delivered;
        found.lost += (n - 1 - own) as u64 - delivered;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each client of a clean storm hears when the server logs them
    /// in in `order` (client indexes).
    fn clean(order: &[u32]) -> Vec<Vec<u32>> {
        let mut heard = vec![Vec::new(); order.len()];
        for (at, &c) in order.iter().enumerate() {
            heard[c as usize] = order[at + 1..].to_vec();
        }
        heard
    }

    const ORDER: [u32; 6] = [2, 0, 5, 4, 1, 3];

    #[test]
    fn a_clean_storm_in_any_order_passes() {
        let found = check(&clean(&ORDER));
        assert_eq!(
            found,
            StormCheck {
                expected: 15,
                delivered: 15,
                ..StormCheck::default()
            }
        );
    }

    #[test]
    fn no_client_and_one_client_expect_nothing() {
        assert_eq!(check(&[]), StormCheck::default());
        assert_eq!(check(&[Vec::new()]), StormCheck::default());
    }

    #[test]
    fn a_lost_line_is_counted() {
        let mut heard = clean(&ORDER);
        // Client 0 (second to log in) misses the fourth login.
        heard[0].retain(|&x| x != 4);
        let found = check(&heard);
        assert_eq!(found.lost, 1, "{found:?}");
        assert_eq!(found.delivered, 14, "{found:?}");
        assert_eq!(found.duplicated, 0, "{found:?}");
    }

    #[test]
    fn the_first_clients_lost_line_is_counted() {
        let mut heard = clean(&ORDER);
        heard[2].retain(|&x| x != 1);
        let found = check(&heard);
        assert_eq!(found.lost, 1, "{found:?}");
        assert_eq!(found.misordered + found.duplicated, 0, "{found:?}");
    }

    #[test]
    fn a_line_heard_twice_is_counted() {
        let mut heard = clean(&ORDER);
        heard[5].push(1);
        let found = check(&heard);
        assert_eq!(found.duplicated, 1, "{found:?}");
        assert_eq!(found.lost + found.misordered, 0, "{found:?}");
    }

    #[test]
    fn two_lines_swapped_are_misordered() {
        let mut heard = clean(&ORDER);
        heard[0].swap(1, 2);
        let found = check(&heard);
        assert_eq!(found.misordered, 1, "{found:?}");
        assert_eq!(found.lost + found.duplicated, 0, "{found:?}");
    }

    #[test]
    fn a_login_before_the_hearers_own_is_misordered() {
        let mut heard = clean(&ORDER);
        // Client 1 (fifth) hears of client 5 (third).
        heard[1].insert(0, 5);
        let found = check(&heard);
        assert!(found.misordered >= 1, "{found:?}");
    }

    #[test]
    fn a_client_hearing_its_own_login_is_misordered() {
        let mut heard = clean(&ORDER);
        heard[3].push(3);
        let found = check(&heard);
        assert_eq!(found.misordered, 1, "{found:?}");
    }

    #[test]
    fn an_unknown_client_is_misordered() {
        let mut heard = clean(&ORDER);
        heard[4].push(99);
        let found = check(&heard);
        assert_eq!(found.misordered, 1, "{found:?}");
        assert_eq!(found.lost + found.duplicated, 0, "{found:?}");
    }
}
