//! Where `ordersaga tail` starts reading each partition: kcat's `-o`
//! (`beginning`, `end`, an offset, `-N` from the end, `@TIME`), and the
//! times the operator tools take (`--since`, `--until`, `@TIME`).

use chrono::{DateTime, Utc};
use std::str::FromStr;

/// Where reading starts in each partition: kcat's `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// `beginning`: the first record still kept.
    Beginning,
    /// `end`: only records written from now on.
    End,
    /// `N`: the records at and after this offset, in every partition (a
    /// partition that ends before it shows nothing until it gets there).
    Offset(i64),
    /// `-N`: the last N records of each partition.
    Tail(i64),
    /// `@TIME`: the first record stamped at or after this time.
    Time(DateTime<Utc>),
}

impl FromStr for Start {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "beginning" => Ok(Start::Beginning),
            "end" => Ok(Start::End),
            _ => {
                if let Some(time) = text.strip_prefix('@') {
                    return parse_time(time).map(Start::Time);
                }
                if let Some(n) = text.strip_prefix('-') {
                    return n
                        .parse::<i64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .map(Start::Tail)
                        .ok_or_else(|| format!("{text:?}: -N needs a count above zero"));
                }
                text.parse::<i64>().map(Start::Offset).map_err(|_| {
                    format!("{text:?}: expected beginning, end, N, -N or @TIME (RFC 3339 or epoch milliseconds)")
                })
            }
        }
    }
}

/// A time as an operator writes it: RFC 3339 (`2026-11-27T10:00:00Z`),
/// epoch milliseconds (`1795773600000`), or a duration ago (`90s`, `15m`,
/// `2h`, `7d`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| format!("{text:?}: epoch milliseconds out of range"));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
    let (number, unit) = text.split_at(unit_at);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if seconds > 0 => n
            .checked_mul(seconds)
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|ago| Utc::now().checked_sub_signed(ago))
            .ok_or_else(|| format!("{text:?}: too far back")),
        _ => Err(format!(
            "{text:?}: expected an RFC 3339 time, epoch milliseconds or a duration ago (90s, 15m, 2h, 7d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcat_offsets_parse() {
        assert_eq!("beginning".parse(), Ok(Start::Beginning));
        assert_eq!("end".parse(), Ok(Start::End));
        assert_eq!("42".parse(), Ok(Start::Offset(42)));
        assert_eq!("-10".parse(), Ok(Start::Tail(10)));
        assert!("-0".parse::<Start>().is_err());
        assert!("later".parse::<Start>().is_err());
        let at = "@2026-11-27T10:00:00Z".parse::<Start>().unwrap();
        assert_eq!(at, "@1795773600000".parse().unwrap());
        let Start::Time(ago) = "@2h".parse::<Start>().unwrap() else {
            panic!("a duration ago is a time")
        };
        let two_hours = (Utc::now() - ago).num_seconds();
        assert!((7190..=7210).contains(&two_hours), "{two_hours}");
        assert!(parse_time("2x").is_err());
    }
}
