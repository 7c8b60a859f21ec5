//! Mail authentication: DKIM keys and signing (RFC 6376, RFC 8463) on top of mail-auth, SPF
//! (RFC 7208) and DMARC (RFC 7489) of Tern's own, and the verification of inbound mail.

pub mod arc;
pub mod dkim;
pub mod dmarc;
pub mod report;
pub mod spf;
pub mod verify;
