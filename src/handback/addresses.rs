//! The two reserved address forms that carry a covered user's mail between the gateway, the
//! standby's Postfix and the hand-back agent, without an extra header or a lookup table:
//!
//! - the **journal** address (`alice@example.com.continuity-journal.invalid`): the gateway's
//!   `recipient_bcc_maps` sends a copy of every message for a covered user there while the
//!   domain is routed to its primary; the standby files it in the user's mailbox (the 90-day
//!   archive) and never hands it back;
//! - the **hand-back** address (`alice@example.com.continuity-handback.invalid`): the
//!   standby's own `recipient_bcc_maps` adds it to every message it accepts for a covered user,
//!   and Postfix delivers that copy to the agent, which holds it for the primary.
//!
//! `.invalid` (RFC 2606) never resolves, so neither form can leak to a real server.

/// Appended to a covered address's domain to name its journal address.
pub const JOURNAL_SUFFIX: &str = ".continuity-journal.invalid";
/// Appended to a covered address's domain to name its hand-back address.
pub const HANDBACK_SUFFIX: &str = ".continuity-handback.invalid";

/// The journal address of `address`.
pub fn journal(address: &str) -> String {
    format!("{address}{JOURNAL_SUFFIX}")
}

/// The hand-back address of `address`.
pub fn handback(address: &str) -> String {
    format!("{address}{HANDBACK_SUFFIX}")
}

/// The journal domain of a mail domain (what the gateway routes to the standby).
pub fn journal_domain(domain: &str) -> String {
    format!("{domain}{JOURNAL_SUFFIX}")
}

/// The hand-back domain of a mail domain (what the standby routes to the agent).
pub fn handback_domain(domain: &str) -> String {
    format!("{domain}{HANDBACK_SUFFIX}")
}

/// The covered address a hand-back address stands for, if it is one (case-insensitive, as
/// domains are).
pub fn from_handback(address: &str) -> Option<&str> {
    let cut = address.len().checked_sub(HANDBACK_SUFFIX.len())?;
    let (original, suffix) = (address.get(..cut)?, address.get(cut..)?);
    (suffix.eq_ignore_ascii_case(HANDBACK_SUFFIX) && original.contains('@')).then_some(original)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handback_address_names_its_user_and_nothing_else_does() {
        assert_eq!(from_handback(&handback("alice@example.com")), Some("alice@example.com"));
        assert_eq!(
            from_handback("Alice@Example.com.CONTINUITY-HANDBACK.invalid"),
            Some("Alice@Example.com")
        );
        assert_eq!(from_handback(&journal("alice@example.com")), None);
        assert_eq!(from_handback("alice@example.com"), None);
        assert_eq!(from_handback(HANDBACK_SUFFIX), None, "no user");
        assert_eq!(from_handback("é"), None);
    }
}
