//! Which addresses to offer someone typing one: completion offers those containing what was
//! typed, once it is [`MIN_TYPED`] characters long (fewer would list half the directory);
//! an address that is not in the directory gets its closest matches instead. Similarity is
//! `strsim`'s Jaro-Winkler, which favours a shared beginning, as typos in names have.

/// Characters typed before completion offers addresses.
pub const MIN_TYPED: usize = 3;
/// Addresses offered at most.
pub const MAX_OFFERED: usize = 50;
/// Closest matches printed for an unknown address.
pub const CLOSEST: usize = 5;

/// The candidates containing `typed` (case-insensitive), those starting with it first, at
/// most [`MAX_OFFERED`]; none while fewer than [`MIN_TYPED`] characters are typed.
pub fn completions<'a>(candidates: impl IntoIterator<Item = &'a str>, typed: &str) -> Vec<String> {
    if typed.chars().count() < MIN_TYPED {
        return Vec::new();
    }
    let typed = typed.to_lowercase();
    let mut matching: Vec<(bool, &str)> = candidates
        .into_iter()
        .filter(|c| c.to_lowercase().contains(&typed))
        .map(|c| (!c.to_lowercase().starts_with(&typed), c))
        .collect();
    matching.sort();
    matching.dedup();
    matching
        .into_iter()
        .take(MAX_OFFERED)
        .map(|(_, c)| c.to_owned())
        .collect()
}

/// The [`CLOSEST`] candidates most like `typed`: those containing it first, then by
/// similarity of the whole address and of its local part.
pub fn closest<'a>(candidates: impl IntoIterator<Item = &'a str>, typed: &str) -> Vec<String> {
    let typed = typed.to_lowercase();
    let typed_local = typed.split('@').next().unwrap_or_default();
    let mut scored: Vec<(bool, u64, &str)> = candidates
        .into_iter()
        .map(|candidate| {
            let lower = candidate.to_lowercase();
            let local = lower.split('@').next().unwrap_or_default();
            let similarity = strsim::jaro_winkler(&lower, &typed).max(strsim::jaro_winkler(local, typed_local));
            // Scaled to an integer so that candidates sort totally.
            (!lower.contains(&typed), u64::MAX - (similarity * 1e9) as u64, candidate)
        })
        .collect();
    scored.sort();
    scored.into_iter().take(CLOSEST).map(|(_, _, c)| c.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECTORY: [&str; 6] = [
        "alice@corp.example",
        "malice@corp.example",
        "alicia@corp.example",
        "bob@corp.example",
        "albert@corp.example",
        "carol@corp.example",
    ];

    #[test]
    fn completion_starts_at_exactly_three_characters() {
        assert!(completions(DIRECTORY, "").is_empty());
        assert!(completions(DIRECTORY, "al").is_empty(), "two characters offer nothing");
        assert_eq!(
            completions(DIRECTORY, "ali"),
            ["alice@corp.example", "alicia@corp.example", "malice@corp.example"],
            "prefix matches first, then addresses containing it"
        );
        assert_eq!(completions(DIRECTORY, "BOB"), ["bob@corp.example"]);
        assert!(completions(DIRECTORY, "zzz").is_empty());
    }

    #[test]
    fn offers_are_capped() {
        let many: Vec<String> = (0..200).map(|i| format!("user{i:03}@corp.example")).collect();
        assert_eq!(completions(many.iter().map(String::as_str), "user").len(), MAX_OFFERED);
    }

    #[test]
    fn an_unknown_address_gets_the_closest_ones() {
        let found = closest(DIRECTORY, "alcie@corp.example");
        assert_eq!(found.len(), CLOSEST);
        assert_eq!(found[0], "alice@corp.example", "{found:?}");
        assert_eq!(closest(DIRECTORY, "caro")[0], "carol@corp.example");
        assert_eq!(
            closest(DIRECTORY, "lice")[..2],
            ["alice@corp.example", "malice@corp.example"]
        );
    }
}
