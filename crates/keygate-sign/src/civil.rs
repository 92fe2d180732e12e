// Unix seconds to a UTC calendar date and time, without a date crate (Howard Hinnant's
// civil_from_days, proleptic Gregorian). Shared by SigV4's `X-Amz-Date`, exports and the console.

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    /// The UTC calendar date and time of a Unix second.
    pub fn from_unix(unix: i64) -> Self {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        // Every value below is in range by construction (day 1–31, month 1–12, seconds < 86400).
        Self {
            year: y,
            month: m as u32,
            day: d as u32,
            hour: (secs / 3600) as u32,
            minute: (secs / 60 % 60) as u32,
            second: (secs % 60) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(
            Civil::from_unix(0),
            Civil { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0 }
        );
        assert_eq!(
            Civil::from_unix(1_764_000_000),
            Civil { year: 2025, month: 11, day: 24, hour: 16, minute: 0, second: 0 }
        );
        // Leap day and the end of a century year that is a leap year.
        assert_eq!(
            Civil::from_unix(951_782_400),
            Civil { year: 2000, month: 2, day: 29, hour: 0, minute: 0, second: 0 }
        );
        assert_eq!(
            Civil::from_unix(-1),
            Civil { year: 1969, month: 12, day: 31, hour: 23, minute: 59, second: 59 }
        );
    }
}
