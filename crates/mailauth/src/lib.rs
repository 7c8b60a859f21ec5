//! Mail authentication. Now: DKIM keys (`tern dkim generate`), the DNS records to publish, and
//! DKIM signing of outgoing mail (RFC 6376, RFC 8463) on top of mail-auth.

pub mod dkim;
pub mod dmarc;
pub mod report;
pub mod resolver;
pub mod verify;
