//! A domain's DKIM keys between the store, which keeps them, and `tern-mailauth`, which
//! makes and uses them (neither crate knows the other).

use tern_mailauth::dkim::{DkimAlgorithm, DkimKey};
use tern_store::{DomainKey, KeyAlgorithm};

/// The stored keys of a domain, ready for the signer.
pub fn signing_keys(stored: &[DomainKey]) -> Vec<DkimKey> {
    stored.iter().map(signing_key).collect()
}

pub fn signing_key(k: &DomainKey) -> DkimKey {
    DkimKey {
        selector: k.selector.clone(),
        algorithm: match k.algorithm {
            KeyAlgorithm::Ed25519 => DkimAlgorithm::Ed25519,
            KeyAlgorithm::Rsa => DkimAlgorithm::Rsa,
        },
        private_key: k.private_key.clone(),
        public_key: k.public_key.clone(),
        created: k.created,
    }
}

/// A key made by `tern_mailauth::dkim::generate`, as the store keeps it.
pub fn stored_key(k: DkimKey) -> DomainKey {
    DomainKey {
        selector: k.selector,
        algorithm: match k.algorithm {
            DkimAlgorithm::Ed25519 => KeyAlgorithm::Ed25519,
            DkimAlgorithm::Rsa => KeyAlgorithm::Rsa,
        },
        private_key: k.private_key,
        public_key: k.public_key,
        created: k.created,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_the_round_trip_through_the_store_form() {
        for algorithm in [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa] {
            let key = DkimKey {
                selector: "202612e".into(),
                algorithm,
                private_key: "cHJpdmF0ZQ==".into(),
                public_key: "cHVibGlj".into(),
                created: 1_764_000_000,
            };
            assert_eq!(signing_key(&stored_key(key.clone())), key);
        }
    }
}
