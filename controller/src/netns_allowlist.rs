//! The network namespaces an operator lets admins attach to a VPC (`--attachable-netns`).
/// The network namespaces an operator lets admins attach to a VPC (`--attachable-netns`): names
/// of `/run/netns/NAME`, or patterns where `*` stands for any run of characters. Empty: none (a
/// VPC reaches no host namespace unless the operator says which).
#[derive(Debug, Clone, Default)]
pub struct NetnsAllowlist(Vec<String>);

impl NetnsAllowlist {
    pub fn new(patterns: &[String]) -> NetnsAllowlist {
        NetnsAllowlist(
            patterns
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    pub fn allows(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|p| glob_match(p.as_bytes(), name.as_bytes()))
    }

    /// The patterns, for an error message.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            "none: start the controller with --attachable-netns NAME[,NAME...]".to_string()
        } else {
            self.0.join(",")
        }
    }
}

/// `*` matches any run of characters; every other character itself.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_match(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob_match(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_netns_allowlist_matches_names_and_globs_and_is_empty_by_default() {
        let none = NetnsAllowlist::default();
        assert!(!none.allows("db"));
        let l = NetnsAllowlist::new(&["db".into(), "lamdb-*".into(), " ".into()]);
        assert!(l.allows("db"));
        assert!(!l.allows("db2"));
        assert!(l.allows("lamdb-1234"));
        assert!(l.allows("lamdb-"));
        assert!(!l.allows("xlamdb-1"));
        assert!(!l.allows(""));
    }
}
