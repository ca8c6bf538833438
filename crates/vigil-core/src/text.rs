//! How Vigil writes numbers, times and bytes as text, the same in findings, pages and
//! notifications: one figure for a value, one wording of a change, one UTC calendar time, one
//! lowercase hex.

/// A relative change in words, the same wherever a finding is shown (its sentence, its page,
/// its chart): a factor from twice up, a share lower from half down, a percentage between.
pub fn change_words(effect: f64) -> String {
    if !effect.is_finite() {
        return "n/a".to_owned();
    }
    let ratio = 1.0 + effect;
    if ratio >= 2.0 {
        return format!("{ratio:.1}x");
    }
    if ratio <= 0.5 {
        return format!("{:.0} % lower", (1.0 - ratio) * 100.0);
    }
    format!("{:+.0} %", effect * 100.0)
}

/// A value with about three significant digits: how findings, pages and charts write a number,
/// so that each states the same figure.
pub fn figure(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{value:.3e}")
    } else if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Year, month and day of a count of days since 1970-01-01 (proleptic Gregorian calendar).
fn civil_date(days_since_epoch: i64) -> (i64, u32, u32) {
    // Count from 0000-03-01 so that the leap day ends each 4-, 100- and 400-year cycle.
    let days = days_since_epoch + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2024-03-01 10:15:00 UTC`.
pub fn utc(unix: i64) -> String {
    let (year, month, day) = civil_date(unix.div_euclid(86_400));
    let seconds_of_day = unix.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        seconds_of_day / 3600,
        (seconds_of_day % 3600) / 60,
        seconds_of_day % 60
    )
}

/// `2024-03-01`: the UTC day of a mark or a model.
pub fn utc_date(unix: i64) -> String {
    let (year, month, day) = civil_date(unix.div_euclid(86_400));
    format!("{year:04}-{month:02}-{day:02}")
}

/// `10:15` (UTC), for chart axes, short labels and one-line explanations.
pub fn clock_time(unix: i64) -> String {
    let seconds_of_day = unix.rem_euclid(86_400);
    format!(
        "{:02}:{:02}",
        seconds_of_day / 3600,
        (seconds_of_day % 3600) / 60
    )
}

/// `10:15 UTC`: a time in a finding's sentence or a coverage gap's reason.
pub fn clock_time_utc(unix: i64) -> String {
    format!("{} UTC", clock_time(unix))
}

/// `text` with every byte but the unreserved characters of RFC 3986 written as `%XX`: a query
/// value in a URL (a webhook's signature, a Prometheus graph link).
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Lowercase hex of `bytes`: stored token hashes, token secrets and webhook signatures.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut encoded = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        encoded.push(char::from(DIGITS[usize::from(byte >> 4)]));
        encoded.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
        assert_eq!(clock_time(1_700_000_000), "22:13");
    }

    #[test]
    fn numbers_keep_about_three_digits() {
        assert_eq!(figure(302.4), "302");
        assert_eq!(figure(12.345), "12.3");
        assert_eq!(figure(1.2345), "1.23");
        assert_eq!(figure(0.012345), "0.012");
        assert_eq!(figure(0.0), "0");
        assert_eq!(figure(f64::NAN), "n/a");
    }

    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
