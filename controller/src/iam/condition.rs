//! The `Condition` block: operators, their compiled values and their evaluation against the
//! request's context keys. Keys are case-insensitive (lower-cased at parse time); within one
//! operator several keys must all hold (AND) and several values of one key any (OR); negated
//! operators hold when the key's value matches none of the values.
use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use super::pattern::Pattern;
use super::policy::Request;
use super::{ACCOUNT_ID, REGION};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    ArnLike,
    ArnNotLike,
    IpAddress,
    NotIpAddress,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    Bool,
    Null,
}

impl Op {
    /// The operator named `name` (without `IfExists`).
    pub(super) fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "StringEquals" => Op::StringEquals,
            "StringNotEquals" => Op::StringNotEquals,
            "StringEqualsIgnoreCase" => Op::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Op::StringNotEqualsIgnoreCase,
            "StringLike" => Op::StringLike,
            "StringNotLike" => Op::StringNotLike,
            "ArnLike" | "ArnEquals" => Op::ArnLike,
            "ArnNotLike" | "ArnNotEquals" => Op::ArnNotLike,
            "IpAddress" => Op::IpAddress,
            "NotIpAddress" => Op::NotIpAddress,
            "DateEquals" => Op::DateEquals,
            "DateNotEquals" => Op::DateNotEquals,
            "DateLessThan" => Op::DateLessThan,
            "DateLessThanEquals" => Op::DateLessThanEquals,
            "DateGreaterThan" => Op::DateGreaterThan,
            "DateGreaterThanEquals" => Op::DateGreaterThanEquals,
            "NumericEquals" => Op::NumericEquals,
            "NumericNotEquals" => Op::NumericNotEquals,
            "NumericLessThan" => Op::NumericLessThan,
            "NumericLessThanEquals" => Op::NumericLessThanEquals,
            "NumericGreaterThan" => Op::NumericGreaterThan,
            "NumericGreaterThanEquals" => Op::NumericGreaterThanEquals,
            "Bool" => Op::Bool,
            "Null" => Op::Null,
            _ => return None,
        })
    }

    /// Negated operators: they hold when nothing matches, and when the key is absent.
    fn negated(self) -> bool {
        matches!(
            self,
            Op::StringNotEquals
                | Op::StringNotEqualsIgnoreCase
                | Op::StringNotLike
                | Op::ArnNotLike
                | Op::NotIpAddress
                | Op::DateNotEquals
                | Op::NumericNotEquals
        )
    }
}

/// One operator's values, compiled for it.
#[derive(Clone, Debug)]
enum Values {
    Strings(Vec<String>),
    /// Lower-cased.
    Folded(Vec<String>),
    Patterns(Vec<Pattern>),
    Nets(Vec<IpNet>),
    /// Milliseconds since the epoch.
    Dates(Vec<i64>),
    Numbers(Vec<f64>),
    Bools(Vec<bool>),
    /// `Null`: true means "the key is absent".
    Null(bool),
}

/// One `operator: { key: values }` pair.
#[derive(Clone, Debug)]
pub(super) struct Condition {
    op: Op,
    if_exists: bool,
    /// Lower-cased.
    key: String,
    values: Values,
}

impl Condition {
    /// Compiles `op[IfExists]: { key: values }`; the error says what is wrong with the values.
    pub(super) fn compile(
        op: Op,
        if_exists: bool,
        key: &str,
        values: &[String],
    ) -> Result<Condition, String> {
        if values.is_empty() {
            return Err(format!("key `{key}` has no values"));
        }
        let each = |f: &dyn Fn(&str) -> Option<()>, what: &str| -> Result<(), String> {
            for v in values {
                if f(v).is_none() {
                    return Err(format!("key `{key}`: `{v}` is not {what}"));
                }
            }
            Ok(())
        };
        let values = match op {
            Op::StringEquals | Op::StringNotEquals => Values::Strings(values.to_vec()),
            Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase => {
                Values::Folded(values.iter().map(|v| v.to_lowercase()).collect())
            }
            Op::StringLike | Op::StringNotLike | Op::ArnLike | Op::ArnNotLike => {
                Values::Patterns(values.iter().map(|v| Pattern::new(v)).collect())
            }
            Op::IpAddress | Op::NotIpAddress => {
                each(&|v| parse_net(v).map(|_| ()), "an IP address or CIDR block")?;
                Values::Nets(values.iter().filter_map(|v| parse_net(v)).collect())
            }
            Op::DateEquals
            | Op::DateNotEquals
            | Op::DateLessThan
            | Op::DateLessThanEquals
            | Op::DateGreaterThan
            | Op::DateGreaterThanEquals => {
                each(
                    &|v| parse_date(v).map(|_| ()),
                    "an ISO 8601 date or epoch seconds",
                )?;
                Values::Dates(values.iter().filter_map(|v| parse_date(v)).collect())
            }
            Op::NumericEquals
            | Op::NumericNotEquals
            | Op::NumericLessThan
            | Op::NumericLessThanEquals
            | Op::NumericGreaterThan
            | Op::NumericGreaterThanEquals => {
                each(&|v| v.parse::<f64>().ok().map(|_| ()), "a number")?;
                Values::Numbers(values.iter().filter_map(|v| v.parse().ok()).collect())
            }
            Op::Bool => {
                each(&|v| parse_bool(v).map(|_| ()), "`true` or `false`")?;
                Values::Bools(values.iter().filter_map(|v| parse_bool(v)).collect())
            }
            Op::Null => {
                each(&|v| parse_bool(v).map(|_| ()), "`true` or `false`")?;
                if values.len() != 1 {
                    return Err(format!("key `{key}`: Null takes one value"));
                }
                Values::Null(parse_bool(&values[0]).unwrap_or(false))
            }
        };
        Ok(Condition {
            op,
            if_exists,
            key: key.to_ascii_lowercase(),
            values,
        })
    }

    pub(super) fn holds(&self, req: &Request<'_>) -> bool {
        let value = lookup(req, &self.key);
        if let Values::Null(absent) = self.values {
            return value.is_none() == absent;
        }
        let Some(value) = value else {
            return self.if_exists || self.op.negated();
        };
        let any = match &self.values {
            Values::Strings(vs) => {
                let s = value.as_str();
                vs.iter().any(|v| *v == *s)
            }
            Values::Folded(vs) => {
                let s = value.as_str();
                vs.iter()
                    .any(|v| v.chars().eq(s.chars().flat_map(char::to_lowercase)))
            }
            Values::Patterns(ps) => {
                let s = value.as_str();
                ps.iter().any(|p| p.matches(&s))
            }
            Values::Nets(nets) => match value.as_ip() {
                Some(ip) => nets.iter().any(|n| n.contains(&ip)),
                None => false,
            },
            Values::Dates(ds) => match value.as_date() {
                Some(t) => ds.iter().any(|d| compare(self.op, t.cmp(d))),
                None => false,
            },
            Values::Numbers(ns) => match value.as_number() {
                Some(x) => ns
                    .iter()
                    .any(|n| x.partial_cmp(n).is_some_and(|o| compare(self.op, o))),
                None => false,
            },
            Values::Bools(bs) => match value.as_bool() {
                Some(b) => bs.contains(&b),
                None => false,
            },
            Values::Null(_) => false,
        };
        any != self.op.negated()
    }
}

/// Whether `ordering` (request value against policy value) satisfies `op`.
fn compare(op: Op, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::DateEquals | Op::DateNotEquals | Op::NumericEquals | Op::NumericNotEquals => {
            ordering == Equal
        }
        Op::DateLessThan | Op::NumericLessThan => ordering == Less,
        Op::DateLessThanEquals | Op::NumericLessThanEquals => ordering != Greater,
        Op::DateGreaterThan | Op::NumericGreaterThan => ordering == Greater,
        Op::DateGreaterThanEquals | Op::NumericGreaterThanEquals => ordering != Less,
        _ => false,
    }
}

/// A context key's value in the request.
enum Value<'a> {
    Str(&'a str),
    Ip(IpAddr),
    Time(SystemTime),
    Bool(bool),
}

impl Value<'_> {
    fn as_str(&self) -> Cow<'_, str> {
        match self {
            Value::Str(s) => Cow::Borrowed(s),
            Value::Ip(ip) => Cow::Owned(ip.to_string()),
            Value::Time(t) => Cow::Owned(millis(*t).div_euclid(1000).to_string()),
            Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        }
    }

    fn as_ip(&self) -> Option<IpAddr> {
        match self {
            Value::Ip(ip) => Some(*ip),
            Value::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    fn as_date(&self) -> Option<i64> {
        match self {
            Value::Time(t) => Some(millis(*t)),
            Value::Str(s) => parse_date(s),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<f64> {
        match self {
            Value::Str(s) => s.parse().ok(),
            Value::Time(t) => Some(millis(*t).div_euclid(1000) as f64),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => parse_bool(s),
            _ => None,
        }
    }
}

/// The global and service context keys Lamina knows (`key` lower-cased).
fn lookup<'a>(req: &'a Request<'_>, key: &str) -> Option<Value<'a>> {
    let ctx = req.ctx;
    Some(match key {
        "aws:sourceip" => Value::Ip(ctx.source_ip?),
        "aws:currenttime" | "aws:epochtime" => Value::Time(ctx.now),
        "aws:securetransport" => Value::Bool(ctx.secure_transport),
        "aws:username" | "aws:userid" => Value::Str(&req.principal.access_key_id),
        "aws:principalarn" => Value::Str(&req.principal_arn),
        "aws:principalaccount" => Value::Str(ACCOUNT_ID),
        "aws:principaltype" => Value::Str("User"),
        "aws:requestedregion" => Value::Str(REGION),
        _ => {
            let (_, v) = ctx
                .extra
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))?;
            Value::Str(v)
        }
    })
}

fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// An address (a host: /32 or /128) or a CIDR block, v4 or v6.
pub(super) fn parse_net(v: &str) -> Option<IpNet> {
    v.parse::<IpNet>()
        .ok()
        .or_else(|| v.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Epoch seconds, or ISO 8601: `YYYY-MM-DD[Thh:mm[:ss[.fff]]][Z|±hh:mm|±hhmm]` (UTC without a
/// zone), as milliseconds since the epoch.
pub(super) fn parse_date(v: &str) -> Option<i64> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<i64>().ok()?.checked_mul(1000);
    }
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = v.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (mut h, mut mi, mut s, mut ms) = (0, 0, 0, 0i64);
    let mut i = 10;
    if b.len() > 10 {
        if b[10] != b'T' && b[10] != b't' && b[10] != b' ' {
            return None;
        }
        h = num(11..13)?;
        if b.get(13) != Some(&b':') {
            return None;
        }
        mi = num(14..16)?;
        i = 16;
        if b.get(16) == Some(&b':') {
            s = num(17..19)?;
            i = 19;
            if b.get(19) == Some(&b'.') {
                let start = 20;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if end == start {
                    return None;
                }
                let frac = &v[start..end.min(start + 3)];
                ms = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
                i = end;
            }
        }
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
    }
    let offset_min = match &v[i..] {
        "" | "Z" | "z" => 0,
        z if z.starts_with('+') || z.starts_with('-') => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let oh: i64 = digits[..2].parse().ok()?;
            let om: i64 = digits[2..].parse().ok()?;
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
