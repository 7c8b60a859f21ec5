//! DNS for delivery comes from the shared resolver ([`tern_dns`]): MX with implicit and null
//! MX, addresses, TXT, and DNSSEC-vouched TLSA.

pub use tern_dns::{Dns, DnsError, MxAnswer, Tlsa};
