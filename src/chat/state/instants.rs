//! Instants as wall time and back, through a [`WallClock`]: the saving
//! domain's clock turns its instants into nanoseconds since the Unix
//! epoch, the loading domain's clock turns those into its own instants.
//! Both directions take any value: a time before the clock's reading, or
//! before the epoch, converts like any other, and one no `Instant` can
//! hold becomes the nearest that can.

use std::time::{Duration, Instant};

use crate::chat::WallClock;

const NANOS_PER_MS: i128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The wall time of `t` by `clock`, in nanoseconds since the Unix epoch
/// (negative before it).
pub(super) fn unix_nanos(clock: WallClock, t: Instant) -> i128 {
    let base = i128::from(clock.unix_ms) * NANOS_PER_MS;
    if t >= clock.at {
        base.saturating_add(nanos(t - clock.at))
    } else {
        base.saturating_sub(nanos(clock.at - t))
    }
}

/// The instant of the wall time `unix_nanos` (nanoseconds since the Unix
/// epoch) by `clock`, however far from the clock's reading: the nearest
/// instant there is if it cannot be represented.
pub(super) fn instant_of(clock: WallClock, unix_nanos: i128) -> Instant {
    let base = i128::from(clock.unix_ms) * NANOS_PER_MS;
    let offset = unix_nanos.saturating_sub(base);
    let distance = duration(offset.unsigned_abs());
    if offset >= 0 {
        step_towards(clock.at, distance, Instant::checked_add)
    } else {
        step_towards(clock.at, distance, Instant::checked_sub)
    }
}

/// The instant of the wall time `unix_ms` (milliseconds since the Unix
/// epoch) by `clock`, earlier than its reading or not (see
/// [`instant_of`]).
#[cfg(test)]
pub(super) fn instant_of_ms(clock: WallClock, unix_ms: u64) -> Instant {
    instant_of(clock, i128::from(unix_ms) * NANOS_PER_MS)
}

fn nanos(duration: Duration) -> i128 {
    i128::try_from(duration.as_nanos()).unwrap_or(i128::MAX)
}

/// `nanos` as a duration, the longest there is if it is longer.
fn duration(nanos: u128) -> Duration {
    match u64::try_from(nanos / NANOS_PER_SEC) {
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

/// `from` moved by `distance` with `step` (adding or subtracting), or as
/// far as an instant can go: the part that does not fit is halved until
/// it does.
fn step_towards(
    from: Instant,
    distance: Duration,
    step: fn(&Instant, Duration) -> Option<Instant>,
) -> Instant {
    if let Some(to) = step(&from, distance) {
        return to;
    }
    let mut at = from;
    let mut left = distance;
    let mut stride = distance;
    while !left.is_zero() && !stride.is_zero() {
        stride = stride.min(left);
        match step(&at, stride) {
            Some(next) => {
                at = next;
                left -= stride;
            }
            None => stride /= 2,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALL: u64 = 1_700_000_000_000;

    #[test]
    fn an_instant_goes_to_wall_time_and_back_exactly() {
        let t0 = Instant::now();
        let saver = WallClock {
            at: t0,
            unix_ms: WALL,
        };
        // Another process: another instant for the same wall time.
        let t1 = t0 + Duration::from_secs(86_400);
        let loader = WallClock {
            at: t1,
            unix_ms: WALL,
        };
        let offsets = [0, 1, 999_999, 1_000_000, 12_345_678_901];
        for ns in offsets {
            let later = t0 + Duration::from_nanos(ns);
            let back = instant_of(loader, unix_nanos(saver, later));
            assert_eq!(back - t1, Duration::from_nanos(ns));
            let earlier = t0 - Duration::from_nanos(ns);
            let back = instant_of(loader, unix_nanos(saver, earlier));
            assert_eq!(t1 - back, Duration::from_nanos(ns));
        }
    }

    #[test]
    fn times_before_the_reading_and_the_epoch_convert() {
        let t0 = Instant::now();
        let clock = WallClock { at: t0, unix_ms: 5 };
        assert_eq!(instant_of_ms(clock, 2), t0 - Duration::from_millis(3));
        let before_epoch = t0 - Duration::from_millis(8);
        assert_eq!(unix_nanos(clock, before_epoch), -3 * NANOS_PER_MS);
        assert_eq!(instant_of(clock, -3 * NANOS_PER_MS), before_epoch);
    }

    #[test]
    fn a_time_no_instant_holds_becomes_the_nearest_one() {
        let clock = WallClock {
            at: Instant::now(),
            unix_ms: WALL,
        };
        let far = instant_of(clock, i128::MAX);
        assert!(far > clock.at);
        assert_eq!(far.checked_add(Duration::from_nanos(1)), None);
        let long_ago = instant_of(clock, i128::MIN);
        assert!(long_ago < clock.at);
        assert_eq!(long_ago.checked_sub(Duration::from_nanos(1)), None);
    }
}
