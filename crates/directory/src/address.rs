/// Why an address or domain is not acceptable to the directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not an email address (expected local@domain)")]
    NotAnAddress(String),
    #[error("{0:?} is not a valid domain name")]
    BadDomain(String),
    #[error("{0:?} is not a valid local part")]
    BadLocalPart(String),
}

/// Lower-case ASCII (A-label) form of a domain: `Bücher.Example` → `xn--bcher-kva.example`.
pub fn canonical_domain(domain: &str) -> Result<String, AddressError> {
    let trimmed = domain.trim().trim_end_matches('.');
    let bad = || AddressError::BadDomain(domain.to_string());
    let ascii = idna::domain_to_ascii(trimmed).map_err(|_| bad())?;
    if ascii.is_empty() || ascii.len() > 253 || !ascii.contains('.') {
        return Err(bad());
    }
    for label in ascii.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(ascii)
}

/// Canonical `local@domain`: local part lower-cased, domain via [`canonical_domain`].
/// The local part must be a dot-atom (RFC 5322 §3.4.1, UTF-8 allowed per RFC 6532).
pub fn canonical_address(address: &str) -> Result<String, AddressError> {
    let address = address.trim();
    let (local, domain) = address.rsplit_once('@').ok_or_else(|| AddressError::NotAnAddress(address.to_string()))?;
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if local.is_empty() || local.len() > 64 * 4 || local.split('.').any(|a| a.is_empty() || !a.chars().all(atext)) {
        return Err(AddressError::BadLocalPart(local.to_string()));
    }
    Ok(format!("{}@{}", local.to_lowercase(), canonical_domain(domain)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_idna() {
        assert_eq!(canonical_address("Alice@Example.ORG").unwrap(), "alice@example.org");
        assert_eq!(canonical_address("jörg@Bücher.example").unwrap(), "jörg@xn--bcher-kva.example");
        assert_eq!(canonical_address("JÖRG@xn--bcher-kva.example").unwrap(), "jörg@xn--bcher-kva.example");
        assert_eq!(canonical_domain("example.org.").unwrap(), "example.org");
    }

    #[test]
    fn refusals() {
        for bad in ["", "nobody", "@x.org", "a@", "a b@x.org", "a..b@x.org", "a@localhost", "a@-x.org", "\"q\"@x.org"] {
            assert!(canonical_address(bad).is_err(), "{bad}");
        }
    }
}
