//! HTTP dates: the IMF-fixdate of RFC 9110 §5.6.7 (`Date`, `Last-Modified`, parsed back
//! for `If-Modified-Since`) and the common log format's `10/Oct/2000:13:55:36 +0000`.

use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::rt::clock;

/// Month abbreviations, January first.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

thread_local! {
    /// The last date formatted on this thread, by its second (a file's `Last-Modified`).
    static LAST_HTTP_DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    /// The current `Date` field line and when (on the loop clock) its second ends: every
    /// response carries one, and formatting it cost more than the rest of a small
    /// answer's head.
    static DATE_FIELD: RefCell<(Option<Instant>, String)> =
        const { RefCell::new((None, String::new())) };
}

/// Formats `time` as e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (once per second per thread;
/// a copy of the last one otherwise).
pub(crate) fn http_date(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LAST_HTTP_DATE
        .try_with(|last| {
            let mut last = last.borrow_mut();
            if last.0 != seconds {
                *last = (seconds, format_http_date(seconds));
            }
            last.1.clone()
        })
        .unwrap_or_else(|_| format_http_date(seconds))
}

/// Appends the `Date` field line for now, e.g. `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`.
///
/// The wall clock is read once per second per thread: until the second it was read in
/// ends (measured on [`clock::now`], the loop's cached clock under `Scheduled`), every
/// answer copies the same line. So the date lags the true one by no more than the loop
/// clock does (one resume), and a response costs no clock read.
pub(crate) fn append_date_field(out: &mut Vec<u8>) {
    let now = clock::now();
    let appended = DATE_FIELD.try_with(|current| {
        let mut current = current.borrow_mut();
        if current.0.is_none_or(|until| now >= until) {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let rest_of_second =
                Duration::from_secs(1) - Duration::from_nanos(wall.subsec_nanos().into());
            let line = format!("Date: {}\r\n", format_http_date(wall.as_secs()));
            *current = (Some(now + rest_of_second), line);
        }
        out.extend_from_slice(current.1.as_bytes());
    });
    if appended.is_err() {
        let line = format!("Date: {}\r\n", http_date(SystemTime::now()));
        out.extend_from_slice(line.as_bytes());
    }
}

fn format_http_date(seconds: u64) -> String {
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    )
}

/// Formats `time` for the common log format, e.g. `06/Nov/1994:08:49:37 +0000`.
pub(crate) fn log_date(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let second_of_day = seconds % 86_400;
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        day,
        MONTHS[(month - 1) as usize],
        year,
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    )
}

/// Parses an HTTP-date in any of its three forms, as RFC 9110 §5.6.7 asks of a
/// recipient: the IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850
/// form (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime's (`Sun Nov  6 08:49:37 1994`).
/// `None` for anything else (a condition on an unreadable date is ignored).
pub(crate) fn parse_http_date(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (year, month, day, clock) = imf_fixdate(text)
        .or_else(|| rfc850_date(text))
        .or_else(|| asctime_date(text))?;
    let mut clock = clock.split(':');
    let hour = number(clock.next()?, 2)?;
    let minute = number(clock.next()?, 2)?;
    let second = number(clock.next()?, 2)?;
    if clock.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`: (year, month, day, time of day).
fn imf_fixdate(text: &str) -> Option<(u64, u64, u64, &str)> {
    let (_weekday, rest) = text.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day = number(parts.next()?, 2)?;
    let month = month_number(parts.next()?)?;
    let year = number(parts.next()?, 4)?;
    let clock = parts.next()?;
    (parts.next()? == "GMT" && parts.next().is_none()).then_some((year, month, day, clock))
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`. Its two-digit year is the latest year with those
/// digits that is not more than 50 years ahead of now (RFC 9110 §5.6.7).
fn rfc850_date(text: &str) -> Option<(u64, u64, u64, &str)> {
    let (_weekday, rest) = text.split_once(", ")?;
    let mut parts = rest.split(' ');
    let mut date = parts.next()?.split('-');
    let day = number(date.next()?, 2)?;
    let month = month_number(date.next()?)?;
    let two_digits = number(date.next()?, 2)?;
    let clock = parts.next()?;
    if date.next().is_some() || parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let (this_year, _, _) = civil_from_days(now / 86_400);
    let mut year = this_year - this_year % 100 + two_digits;
    if year > this_year + 50 {
        year -= 100;
    }
    Some((year, month, day, clock))
}

/// `Sun Nov  6 08:49:37 1994` (the day two digits, or a space and one).
fn asctime_date(text: &str) -> Option<(u64, u64, u64, &str)> {
    let bytes = text.as_bytes();
    if bytes.len() != 24 || [3, 7, 10, 19].iter().any(|&at| bytes[at] != b' ') {
        return None;
    }
    let month = month_number(text.get(4..7)?)?;
    let day = match bytes[8..10] {
        [b' ', digit] if digit.is_ascii_digit() => u64::from(digit - b'0'),
        _ => number(text.get(8..10)?, 2)?,
    };
    let year = number(text.get(20..24)?, 4)?;
    Some((year, month, day, text.get(11..19)?))
}

/// `Jan` … `Dec` to 1 … 12.
fn month_number(name: &str) -> Option<u64> {
    MONTHS.iter().position(|m| *m == name).map(|i| i as u64 + 1)
}

/// A decimal of exactly `digits` ASCII digits.
fn number(text: &str, digits: usize) -> Option<u64> {
    if text.len() != digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// (year ≥ 1970, month 1–12, day 1–31) to days since 1970-01-01: Howard Hinnant's algorithm.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year % 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).saturating_sub(719_468)
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31): Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_dates() {
        let at = |secs| http_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 GMT");
        assert_eq!(at(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
    }

    #[test]
    fn the_cached_date_follows_the_second() {
        let at = |secs, nanos| http_date(UNIX_EPOCH + Duration::new(secs, nanos));
        assert_eq!(at(784_111_777, 0), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            at(784_111_777, 999_999_999),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(at(784_111_778, 0), "Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(at(784_111_777, 5), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn the_current_date_is_the_wall_clocks() {
        let before = SystemTime::now();
        let mut out = Vec::new();
        append_date_field(&mut out);
        let after = SystemTime::now();
        let line = std::str::from_utf8(&out).unwrap();
        let text = line
            .strip_prefix("Date: ")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap();
        let date = parse_http_date(text).unwrap();
        let second = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let range = second(before)..=second(after);
        assert!(range.contains(&second(date)), "{out:?} outside {range:?}");
    }

    #[test]
    fn parses_what_it_formats() {
        for secs in [0, 784_111_777, 951_782_400, 4_107_542_399, 1_700_000_000] {
            let time = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_http_date(&http_date(time)), Some(time), "{secs}");
        }
    }

    #[test]
    fn parses_the_obsolete_forms_too() {
        let time = UNIX_EPOCH + Duration::from_secs(784_111_777);
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(text), Some(time), "{text:?}");
        }
        let day = UNIX_EPOCH + Duration::from_secs(784_111_777 + 10 * 86_400);
        assert_eq!(parse_http_date("Wed Nov 16 08:49:37 1994"), Some(day));
        // Two digits more than 50 years ahead are the century before.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (this_year, _, _) = civil_from_days(now / 86_400);
        let ahead = (this_year + 60) % 100;
        let parsed = parse_http_date(&format!("Monday, 01-Jan-{ahead:02} 00:00:00 GMT"));
        let (year, _, _) = civil_from_days(
            parsed
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                / 86_400,
        );
        assert_eq!(year, this_year + 60 - 100);
    }

    #[test]
    fn refuses_other_forms() {
        for text in [
            "",
            "Sunday, 06-Nov-94 08:49:37 UTC",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov   6 08:49:37 1994",
            "Sun Nov 6  08:49:37 1994",
            "Sun Nov  6 08:49:37 1994 x",
            "Sun Nov  6 08:49:37 19941",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
        ] {
            assert_eq!(parse_http_date(text), None, "{text:?}");
        }
    }

    #[test]
    fn log_dates() {
        let time = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(log_date(time), "06/Nov/1994:08:49:37 +0000");
    }
}
