// Calendar arithmetic for config datetimes (TOML offset datetimes → Unix seconds), so the
// binary needs no date crate for one conversion.

use anyhow::{bail, Result};

pub fn datetime_to_unix(dt: &toml::value::Datetime) -> Result<i64> {
    let (Some(date), Some(time)) = (dt.date, dt.time) else {
        bail!("datetime needs a date and a time, e.g. 2027-01-01T00:00:00Z");
    };
    let offset_minutes = match dt.offset {
        Some(toml::value::Offset::Z) => 0,
        Some(toml::value::Offset::Custom { minutes }) => i64::from(minutes),
        None => bail!("datetime needs a UTC offset, e.g. 2027-01-01T00:00:00Z"),
    };
    let days = days_from_civil(i64::from(date.year), i64::from(date.month), i64::from(date.day));
    let secs =
        days * 86_400 + i64::from(time.hour) * 3600 + i64::from(time.minute) * 60 + i64::from(time.second);
    Ok(secs - offset_minutes * 60)
}

// Howard Hinnant's days_from_civil: days since 1970-01-01 in the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_known_instants() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:00:00Z", 951_825_600),
            ("2021-02-07T09:47:01Z", 1_612_691_221),
            ("2021-02-07T17:47:01+08:00", 1_612_691_221),
        ];
        for (text, want) in cases {
            let dt: toml::value::Datetime = text.parse().unwrap();
            assert_eq!(datetime_to_unix(&dt).unwrap(), want, "{text}");
        }
        let local: toml::value::Datetime = "2021-02-07T09:47:01".parse().unwrap();
        assert!(datetime_to_unix(&local).is_err());
    }
}
