//! Dates as Lambda writes them, without a date library: one implementation for the controller's
//! REST shapes, fnctl's output and the worker's log stream names.

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Epoch milliseconds as Lambda writes `LastModified`: `2024-05-01T12:00:00.123+0000`.
pub fn lambda_timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Epoch milliseconds as API Gateway writes a request's `time`: `12/Mar/2020:19:03:58 +0000`.
pub fn apigw_request_time(ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(lambda_timestamp(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(
            apigw_request_time(1_584_039_838_123),
            "12/Mar/2020:19:03:58 +0000"
        );
        assert_eq!(
            lambda_timestamp(1_714_564_800_123),
            "2024-05-01T12:00:00.123+0000"
        );
        assert_eq!(
            lambda_timestamp(951_782_400_000),
            "2000-02-29T00:00:00.000+0000"
        );
        assert_eq!(
            lambda_timestamp(1_735_689_599_999),
            "2024-12-31T23:59:59.999+0000"
        );
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
