//! Feature hashes: 64-bit FNV-1a. The hashes are stored (the model is keyed by them), so the
//! function must never change; FNV-1a is fixed, tiny and fast on short inputs, and at 64 bits
//! two of a model's features collide with negligible probability.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0100_0000_01b3;

pub struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(OFFSET)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// The hash of a feature of one kind (`kind` keeps a body word apart from the same subject word).
pub fn feature_hash(kind: u8, bytes: &[u8]) -> u64 {
    let mut fnv = Fnv::new();
    fnv.write(&[kind]);
    fnv.write(bytes);
    fnv.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stable_values() {
        // Stored models depend on these exact values.
        let mut f = super::Fnv::new();
        f.write(b"a");
        assert_eq!(0xaf63_dc4c_8601_ec8c, f.finish());
        assert_eq!(0xcbf2_9ce4_8422_2325, super::Fnv::new().finish());
    }
}
