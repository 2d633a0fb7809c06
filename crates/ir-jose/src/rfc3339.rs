//! RFC 3339 UTC times with whole seconds (`2026-12-07T07:03:27Z`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds as RFC 3339 UTC, e.g. `1970-01-01T00:00:00Z`. Exact for
/// every second from year 0 to 9999; outside, the year has more digits or a
/// sign (never a panic).
pub fn rfc3339(unix_seconds: i64) -> String {
    let (days, secs) = (
        unix_seconds.div_euclid(86_400),
        unix_seconds.rem_euclid(86_400),
    );
    // Days to civil date (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `at` as RFC 3339 UTC, the fraction of a second dropped (rounded down,
/// before the epoch too).
pub fn rfc3339_at(at: SystemTime) -> String {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let d = before.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                (-whole).saturating_sub(1)
            } else {
                -whole
            }
        }
    };
    // Years past 9999 are not RFC 3339; a clock that far off is a bug, and
    // the largest second stays a readable, sortable answer.
    rfc3339(secs.clamp(-62_167_219_200, 253_402_300_799))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_and_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_796_627_007), "2026-12-07T07:03:27Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(-62_167_219_200), "0000-01-01T00:00:00Z");
        // No panic at the ends of the range.
        let _ = rfc3339(i64::MAX);
        let _ = rfc3339(i64::MIN);
    }

    #[test]
    fn system_times_drop_the_fraction() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        assert_eq!(rfc3339_at(at), "2023-11-14T22:13:20Z");
        let before = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(rfc3339_at(before), "1969-12-31T23:59:59Z");
        assert_eq!(
            rfc3339_at(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31T23:59:59Z"
        );
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 2);
        assert_eq!(rfc3339_at(far), "9999-12-31T23:59:59Z");
    }
}
