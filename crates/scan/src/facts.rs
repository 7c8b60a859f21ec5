//! What Tern already knows about how a message arrived, in the form scanners use.

/// Facts about a message's arrival: authentication results and reputation checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `(method, result)` from Authentication-Results (RFC 8601): `("spf", "pass")`, ...
    /// One entry per method: a method with several results (DKIM with several signatures)
    /// counts as `pass` if any passed.
    results: Vec<(String, String)>,
    /// DNS blocklists that list the client.
    pub dnsbl: Vec<String>,
    /// Arrived over TLS.
    pub tls: bool,
    /// Sent by an authenticated user (submission).
    pub authenticated: bool,
}

impl Facts {
    /// Reads the results of an Authentication-Results value (`authserv-id; method=result
    /// ptype.property=value ...; ...`, RFC 8601 §2.2).
    pub fn from_authentication_results(value: &str) -> Facts {
        let mut facts = Facts::default();
        for resinfo in value.split(';').skip(1) {
            let Some(first) = resinfo.split_whitespace().next() else { continue };
            let Some((method, result)) = first.split_once('=') else { continue };
            let method = method.trim().to_ascii_lowercase();
            let result = result.trim().to_ascii_lowercase();
            if method.is_empty() || result.is_empty() || method.len() > 16 || result.len() > 16 {
                continue;
            }
            match facts.results.iter_mut().find(|(m, _)| *m == method) {
                Some((_, r)) => {
                    if result == "pass" {
                        *r = result;
                    }
                }
                None => facts.results.push((method, result)),
            }
        }
        facts
    }

    pub fn with_dnsbl(mut self, zones: Vec<String>) -> Facts {
        self.dnsbl = zones;
        self
    }

    /// `(method, result)` pairs.
    pub fn results(&self) -> impl Iterator<Item = (&str, &str)> {
        self.results.iter().map(|(m, r)| (m.as_str(), r.as_str()))
    }

    /// The result of one method (`spf`, `dkim`, `dmarc`, `arc`, `iprev`).
    pub fn result(&self, method: &str) -> Option<&str> {
        self.results.iter().find(|(m, _)| m == method).map(|(_, r)| r.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Facts;

    #[test]
    fn reads_authentication_results() {
        let f = Facts::from_authentication_results(
            "mx.example;\r\n spf=softfail smtp.mailfrom=a@b.example;\r\n dkim=fail header.d=b.example; dkim=pass header.d=c.example;\r\n dmarc=none (p=none) header.from=b.example; bogus",
        );
        assert_eq!(Some("softfail"), f.result("spf"));
        assert_eq!(Some("pass"), f.result("dkim"));
        assert_eq!(Some("none"), f.result("dmarc"));
        assert_eq!(None, f.result("arc"));
        assert_eq!(Facts::default(), Facts::from_authentication_results("mx.example; none"));
    }
}
