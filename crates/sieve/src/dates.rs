//! Date parts of RFC 5260 §4.2, from a UTC time and a zone offset.

const PARTS: &[&str] = &[
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601", "std11", "zone", "weekday",
];

pub fn is_part(s: &str) -> bool {
    s.contains("${") || PARTS.contains(&s.to_ascii_lowercase().as_str())
}

/// A date field's value: its UTC time and the zone it was written in (minutes east).
pub fn parse(value: &str) -> Option<(i64, i32)> {
    let dt = mail_parser::DateTime::parse_rfc822(value.trim())?;
    if !dt.is_valid() {
        return None;
    }
    let offset = (i32::from(dt.tz_hour) * 60 + i32::from(dt.tz_minute)) * if dt.tz_before_gmt { -1 } else { 1 };
    Some((dt.to_timestamp(), offset))
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's civil-from-days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `part` of the time `utc` seen in the zone `offset` (minutes east of UTC); `None` for an
/// unknown part.
pub fn part(utc: i64, offset: i32, part: &str) -> Option<String> {
    let local = utc + i64::from(offset) * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil(days);
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let sign = if offset < 0 { '-' } else { '+' };
    let zone = format!("{sign}{:02}{:02}", offset.abs() / 60, offset.abs() % 60);
    let weekday = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday (0 = Sunday)
    Some(match part.to_ascii_lowercase().as_str() {
        "year" => format!("{year:04}"),
        "month" => format!("{month:02}"),
        "day" => format!("{day:02}"),
        "date" => format!("{year:04}-{month:02}-{day:02}"),
        "julian" => (days + 40_587).to_string(), // Modified Julian Day
        "hour" => format!("{hour:02}"),
        "minute" => format!("{minute:02}"),
        "second" => format!("{second:02}"),
        "time" => format!("{hour:02}:{minute:02}:{second:02}"),
        "iso8601" => format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{sign}{:02}:{:02}",
            offset.abs() / 60,
            offset.abs() % 60
        ),
        "std11" => {
            const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
            const MONTHS: [&str; 12] =
                ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            format!(
                "{}, {day:02} {} {year:04} {hour:02}:{minute:02}:{second:02} {zone}",
                DAYS[weekday as usize],
                MONTHS[(month - 1) as usize]
            )
        }
        "zone" => zone,
        "weekday" => weekday.to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_date() {
        let (utc, offset) = parse("Sat, 01 Oct 2005 20:04:27 -0700").unwrap();
        assert_eq!(offset, -420);
        assert_eq!(part(utc, offset, "date").unwrap(), "2005-10-01");
        assert_eq!(part(utc, offset, "iso8601").unwrap(), "2005-10-01T20:04:27-07:00");
        assert_eq!(part(utc, offset, "std11").unwrap(), "Sat, 01 Oct 2005 20:04:27 -0700");
        assert_eq!(part(utc, offset, "weekday").unwrap(), "6");
        assert_eq!(part(utc, 0, "date").unwrap(), "2005-10-02");
        assert_eq!(part(utc, 0, "hour").unwrap(), "03");
        assert_eq!(part(0, 0, "julian").unwrap(), "40587");
        assert_eq!(part(utc, offset, "zone").unwrap(), "-0700");
        assert!(parse("not a date").is_none());
    }
}
