//! Which rooms a token lets its holder use: the rooms claim (by default
//! `rooms`) lists room names, and a name ending in `*` covers every room that
//! starts with what comes before it (`team-42:*` covers `team-42:support`;
//! a lone `*` covers every room). Anything else in the claim grants nothing.

use serde_json::Value;

/// At most this many entries of a rooms claim are looked at.
pub const MAX_GRANTS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomGrants {
    /// Exact room names.
    exact: Vec<String>,
    /// Prefixes of `*` patterns (empty for a lone `*`).
    prefixes: Vec<String>,
}

impl RoomGrants {
    /// Every room: auth is off.
    pub fn all() -> Self {
        Self {
            exact: Vec::new(),
            prefixes: vec![String::new()],
        }
    }

    /// Reads a claim value: an array of strings, or one string of
    /// space-separated patterns (the OAuth `scope` style). Entries that are
    /// not strings, and patterns with a `*` anywhere but at the end, grant
    /// nothing. An absent claim grants no room.
    pub fn from_claim(claim: Option<&Value>) -> Self {
        let mut grants = Self::default();
        let patterns: Vec<&str> = match claim {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(text)) => text.split_whitespace().collect(),
            _ => Vec::new(),
        };
        for pattern in patterns.into_iter().take(MAX_GRANTS) {
            match pattern.strip_suffix('*') {
                Some(prefix) if !prefix.contains('*') => grants.prefixes.push(prefix.to_owned()),
                Some(_) => {}
                None if !pattern.is_empty() && !pattern.contains('*') => {
                    grants.exact.push(pattern.to_owned())
                }
                None => {}
            }
        }
        grants
    }

    pub fn allows(&self, room: &str) -> bool {
        self.exact.iter().any(|r| r == room) || self.prefixes.iter().any(|p| room.starts_with(p))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_names_and_suffix_wildcards() {
        let grants = RoomGrants::from_claim(Some(&json!(["team-42:*", "support"])));
        for ok in ["team-42:", "team-42:a", "team-42:support:x", "support"] {
            assert!(grants.allows(ok), "{ok}");
        }
        for no in ["team-4", "team-420:a", "team-43:a", "support2", "supp", "x"] {
            assert!(!grants.allows(no), "{no}");
        }
    }

    #[test]
    fn a_lone_star_covers_everything_and_odd_entries_grant_nothing() {
        assert!(RoomGrants::from_claim(Some(&json!(["*"]))).allows("anything"));
        let odd = RoomGrants::from_claim(Some(&json!(["a*b", "*a*", "", 7, null, {"r": "x"}])));
        assert!(odd.is_empty());
        assert!(!odd.allows("ab"));
        assert!(RoomGrants::from_claim(None).is_empty());
        assert!(RoomGrants::from_claim(Some(&json!({"rooms": ["a"]}))).is_empty());
    }

    #[test]
    fn a_space_separated_string_works_too() {
        let grants = RoomGrants::from_claim(Some(&json!("lobby team-1:*")));
        assert!(grants.allows("lobby"));
        assert!(grants.allows("team-1:x"));
        assert!(!grants.allows("team-2:x"));
    }

    #[test]
    fn all_allows_every_room() {
        assert!(RoomGrants::all().allows("x"));
    }
}
