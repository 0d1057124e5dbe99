//! [`Rate`]: how the limits' rates are written and enforced.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// A rate: at most `count` per `period`, all of them at once if need be
/// (a token bucket of `count` tokens refilled over `period`). Written
/// `600/min`, `10/s`, `1000/h`; counts may carry a binary unit
/// (`32MiB/s`) for byte rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
}

impl Rate {
    pub const fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    pub const fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    const fn new(count: u32, period: Duration) -> Self {
        let count = match NonZeroU32::new(count) {
            Some(count) => count,
            None => panic!("a rate counts at least 1"),
        };
        Self { count, period }
    }

    /// The token bucket: `count` tokens, one back every `period / count`.
    pub fn quota(&self) -> governor::Quota {
        let every = (self.period / self.count.get()).max(Duration::from_nanos(1));
        governor::Quota::with_period(every)
            .expect("a positive period")
            .allow_burst(self.count)
    }

    /// Parses a rate; `unlimited` (or `off`, `0`) is `None`.
    pub fn parse_setting(text: &str) -> Result<Option<Self>, String> {
        match text.trim() {
            "unlimited" | "off" | "0" => Ok(None),
            text => text.parse().map(Some),
        }
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("{text:?} is not a rate like `600/min`, `10/s`, `1000/h` or `32MiB/s`");
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count = count.trim();
        let (digits, unit) = count.split_at(
            count
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(count.len()),
        );
        let multiplier: u64 = match unit.trim() {
            "" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(bad()),
        };
        let count = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new)
            .ok_or_else(bad)?;
        let period = match period.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "m" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Self { count, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = match self.period.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => return write!(f, "{}/{:?}", self.count, self.period),
        };
        write!(f, "{}/{period}", self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_periods_and_units() {
        assert_eq!("600/min".parse::<Rate>().unwrap(), Rate::per_minute(600));
        assert_eq!("10/s".parse::<Rate>().unwrap(), Rate::per_second(10));
        assert_eq!(
            "32MiB/s".parse::<Rate>().unwrap(),
            Rate::per_second(32 << 20)
        );
        assert_eq!(
            "1000/h".parse::<Rate>().unwrap().period,
            Duration::from_secs(3600)
        );
        assert_eq!(Rate::parse_setting("unlimited").unwrap(), None);
        for bad in ["10", "x/s", "0/s", "10/fortnight", "5000GiB/s", "-1/s"] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn rates_print_as_they_are_written() {
        assert_eq!(Rate::per_minute(600).to_string(), "600/min");
        assert_eq!(Rate::per_second(10).to_string(), "10/s");
    }

    #[test]
    fn a_quota_allows_the_whole_count_at_once_then_refills() {
        let quota = Rate::per_minute(600).quota();
        assert_eq!(quota.burst_size().get(), 600);
        assert_eq!(quota.replenish_interval(), Duration::from_millis(100));
    }
}
