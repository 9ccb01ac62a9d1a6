//! IAM wildcards: `*` matches any run of characters (also none), `?` exactly one. Compiled at
//! parse time into the cheapest matcher that fits (anything, exact, prefix, suffix or a general
//! glob), so matching allocates nothing.

/// A compiled wildcard pattern. Case is the caller's business: action patterns are lower-cased
/// at parse time and matched against a lower-cased action; resources keep their case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Pattern {
    /// `*`.
    Any,
    Exact(String),
    /// `abc*`.
    Prefix(String),
    /// `*abc`.
    Suffix(String),
    /// Anything else with wildcards.
    Glob(String),
}

impl Pattern {
    pub(super) fn new(p: &str) -> Pattern {
        if p == "*" {
            return Pattern::Any;
        }
        if p.contains('?') {
            return Pattern::Glob(p.to_string());
        }
        match p.matches('*').count() {
            0 => Pattern::Exact(p.to_string()),
            1 if p.ends_with('*') => Pattern::Prefix(p[..p.len() - 1].to_string()),
            1 if p.starts_with('*') => Pattern::Suffix(p[1..].to_string()),
            _ => Pattern::Glob(p.to_string()),
        }
    }

    pub(super) fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(e) => e == s,
            Pattern::Prefix(p) => s.starts_with(p.as_str()),
            Pattern::Suffix(p) => s.ends_with(p.as_str()),
            Pattern::Glob(g) => glob(g.as_bytes(), s.as_bytes()),
        }
    }
}

/// The length of the UTF-8 character that starts with byte `b`.
fn char_len(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Linear wildcard matching with one backtrack point (the last `*`): O(len(p) * len(s)) at worst.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            star = Some((pi, si));
        } else if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            si += char_len(s[si]);
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            let next = ss + char_len(s[ss]);
            star = Some((sp, next));
            pi = sp;
            si = next;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len() && si == s.len()
}
