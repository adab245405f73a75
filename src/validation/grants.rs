//! Which mail domains a namespace may serve: the provider lists them in the namespace's
//! annotation [`ANNOTATION`] (comma-separated names; `*.example.com` grants every name under
//! example.com, not example.com itself). Without the provider's grant a tenant could claim any
//! domain, and receive its mail once the rightful claimant is gone.

/// The namespace annotation listing the mail domains its ContinuityDomains may serve.
pub const ANNOTATION: &str = "continuity.mailops.io/allowed-domains";

/// Whether the annotation `granted` (absent: nothing granted) allows `mail_domain`.
pub fn allows(granted: Option<&str>, mail_domain: &str) -> bool {
    let mail_domain = mail_domain.to_ascii_lowercase();
    granted
        .into_iter()
        .flat_map(|list| list.split(','))
        .map(|entry| entry.trim().to_ascii_lowercase())
        .filter(|entry| !entry.is_empty())
        .any(|entry| match entry.strip_prefix("*.") {
            Some(parent) => mail_domain
                .strip_suffix(parent)
                .is_some_and(|label| label.ends_with('.') && label.len() > 1),
            None => entry == mail_domain,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_wildcards_grant_exactly_what_they_say() {
        let granted = Some("example.com, *.tenant.example.net");
        assert!(allows(granted, "example.com"));
        assert!(allows(granted, "Example.COM"));
        assert!(!allows(granted, "mail.example.com"), "a name grants no subdomain");
        assert!(allows(granted, "a.tenant.example.net"));
        assert!(allows(granted, "b.a.tenant.example.net"));
        assert!(!allows(granted, "tenant.example.net"), "a wildcard grants no apex");
        assert!(!allows(granted, "eviltenant.example.net"));
        assert!(!allows(granted, "svc.cluster.local"));
        assert!(!allows(None, "example.com"), "no annotation, no domain");
        assert!(!allows(Some(" , "), "example.com"));
    }
}
