//! The guard's state shared across the nodes of a cluster, so that an attacker spread over a
//! load balancer meets one ban list, one count of failed logins, one rate per client and one
//! greylist. Each node keeps its own tables (checks stay in memory, without a round trip)
//! and tells the others what it counts; they add it to theirs. Events travel as one text line
//! each over the store's cluster messages (PostgreSQL NOTIFY in cluster mode); a node that is
//! down misses them, which only makes it more lenient until it hears again.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// Something one node's guard counted that the others must count too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardEvent {
    /// A failed login (every node counts it toward the same ban threshold).
    LoginFailed { ip: IpAddr },
    /// An address banned at once (directory harvesting), for this many seconds.
    Banned { ip: IpAddr, seconds: u64 },
    /// Events counted by one named rate limiter for one key.
    Hits { limiter: String, key: String, count: u32 },
    /// A greylist triplet seen for the first time.
    GreylistSeen { network: String, sender: String, recipient: String },
    /// A greylist triplet that passed (retried after the delay).
    GreylistPassed { network: String, sender: String, recipient: String },
}

/// Where a node's guard sends its events (the store's cluster messages).
pub type Outbox = Arc<dyn Fn(GuardEvent) + Send + Sync>;

/// An outbox set once, when the node is in a cluster.
#[derive(Default)]
pub struct Sharing(OnceLock<Outbox>);

impl Sharing {
    pub fn set(&self, outbox: Outbox) {
        let _ = self.0.set(outbox);
    }

    pub fn send(&self, event: impl FnOnce() -> GuardEvent) {
        if let Some(outbox) = self.0.get() {
            outbox(event());
        }
    }
}

/// A field may hold neither the separator nor a line break.
fn clean(field: &str) -> bool {
    !field.is_empty() && !field.contains(['\t', '\n', '\r'])
}

impl GuardEvent {
    /// One line, fields separated by tabs; `None` when a field cannot be carried (it is then
    /// not shared, only counted here).
    pub fn encode(&self) -> Option<String> {
        let fields: Vec<String> = match self {
            GuardEvent::LoginFailed { ip } => vec!["f".into(), ip.to_string()],
            GuardEvent::Banned { ip, seconds } => vec!["b".into(), ip.to_string(), seconds.to_string()],
            GuardEvent::Hits { limiter, key, count } => {
                vec!["h".into(), limiter.clone(), count.to_string(), key.clone()]
            }
            GuardEvent::GreylistSeen { network, sender, recipient } => {
                vec!["g".into(), network.clone(), sender.clone(), recipient.clone()]
            }
            GuardEvent::GreylistPassed { network, sender, recipient } => {
                vec!["p".into(), network.clone(), sender.clone(), recipient.clone()]
            }
        };
        // An empty sender (the null reverse path) travels as "<>".
        let fields: Vec<String> = fields.into_iter().map(|f| if f.is_empty() { "<>".into() } else { f }).collect();
        fields.iter().all(|f| clean(f)).then(|| fields.join("\t"))
    }

    pub fn decode(line: &str) -> Option<GuardEvent> {
        let fields: Vec<&str> = line.split('\t').collect();
        let text = |s: &str| if s == "<>" { String::new() } else { s.to_string() };
        Some(match fields.as_slice() {
            ["f", ip] => GuardEvent::LoginFailed { ip: ip.parse().ok()? },
            ["b", ip, seconds] => GuardEvent::Banned { ip: ip.parse().ok()?, seconds: seconds.parse().ok()? },
            ["h", limiter, count, key] => {
                GuardEvent::Hits { limiter: limiter.to_string(), key: key.to_string(), count: count.parse().ok()? }
            }
            ["g", network, sender, recipient] => {
                GuardEvent::GreylistSeen { network: text(network), sender: text(sender), recipient: text(recipient) }
            }
            ["p", network, sender, recipient] => {
                GuardEvent::GreylistPassed { network: text(network), sender: text(sender), recipient: text(recipient) }
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_bad_lines_are_refused() {
        let events = [
            GuardEvent::LoginFailed { ip: "192.0.2.7".parse().unwrap() },
            GuardEvent::Banned { ip: "2001:db8::1".parse().unwrap(), seconds: 600 },
            GuardEvent::Hits { limiter: "messages_by_domain".into(), key: "example.org".into(), count: 3 },
            GuardEvent::GreylistSeen {
                network: "192.0.2.0/24".into(),
                sender: String::new(),
                recipient: "bob@example.test".into(),
            },
            GuardEvent::GreylistPassed {
                network: "192.0.2.0/24".into(),
                sender: "a@b.example".into(),
                recipient: "bob@example.test".into(),
            },
        ];
        for e in events {
            let line = e.encode().unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(GuardEvent::decode(&line), Some(e));
        }
        let tab = GuardEvent::Hits { limiter: "x".into(), key: "a\tb".into(), count: 1 };
        assert_eq!(tab.encode(), None);
        for bad in ["", "f", "f\tnot-an-ip", "b\t192.0.2.1\t-1", "h\tx\ty\tz", "z\t1", "f\t192.0.2.1\textra"] {
            assert_eq!(GuardEvent::decode(bad), None, "{bad:?}");
        }
    }
}
