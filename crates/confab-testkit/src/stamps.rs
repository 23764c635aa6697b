//! What a clock stamp of a shown line may read: the clients (the terminal
//! one and the web page, both in UTC in the tests) stamp each line `HH:MM`,
//! and mail of an earlier day `YYYY-MM-DD HH:MM`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch of `time`.
pub fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs()
}

/// The UTC date of day `days` since the epoch, as `YYYY-MM-DD` (Howard
/// Hinnant's civil_from_days).
pub fn utc_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A moment the test noted, to check the stamps of lines shown after it.
pub struct Since(u64);

impl Since {
    /// This moment.
    pub fn now() -> Since {
        Since(epoch_seconds(SystemTime::now()))
    }

    /// Every stamp a line of a moment between this one and now may have,
    /// as the client shows it now: `HH:MM` for today (UTC), `YYYY-MM-DD
    /// HH:MM` for an earlier day (a test that ran across midnight).
    pub fn stamps(&self) -> Vec<String> {
        let now = epoch_seconds(SystemTime::now());
        let today = now / 86_400;
        (self.0 / 60..=now / 60)
            .map(|minute| {
                let time = format!("{:02}:{:02}", minute / 60 % 24, minute % 60);
                let day = minute / (24 * 60);
                if day == today {
                    time
                } else {
                    format!("{} {time}", utc_date(day))
                }
            })
            .collect()
    }

    /// Whether `row` is `<stamp> <text>` with a stamp of a moment since
    /// this one.
    pub fn stamped(&self, row: &str, text: &str) -> bool {
        self.stamps()
            .iter()
            .any(|stamp| row == format!("{stamp} {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(19_723), "2024-01-01");
        assert_eq!(utc_date(19_782), "2024-02-29");
    }
}
