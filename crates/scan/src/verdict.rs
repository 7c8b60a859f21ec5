//! One verdict per message: the classifier's judgement turned into points, the heuristic
//! rules' points and the outside scanners' results added up, and the action the score (or a
//! virus) calls for.

use crate::classifier::Judgement;
use crate::facts::Facts;
use serde::{Deserialize, Serialize};

/// What is done with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Delivered as usual.
    Accept,
    /// Delivered with the verdict header only (the header is added in every case; this
    /// names a band that does nothing else).
    Tag,
    /// Delivered into the recipient's Junk mailbox.
    Junk,
    /// Held in the quarantine, not delivered.
    Quarantine,
    /// Refused at the end of DATA (`550 5.7.1` spam, `554 5.7.1` virus).
    Reject,
    /// Accepted and dropped (logged).
    Discard,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Tag => "tag",
            Action::Junk => "junk",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
            Action::Discard => "discard",
        }
    }
}

/// Where the classifier's probability becomes points: `(p - 0.5) * 2 * SPAM_POINTS` above
/// 0.5, `(0.5 - p) * 2 * -HAM_POINTS` below, so a sure spam judgement alone reaches the Junk
/// threshold (5) and a sure ham judgement outweighs a couple of heuristic hits.
pub const SPAM_POINTS: f64 = 6.0;
pub const HAM_POINTS: f64 = 4.0;

/// One reason that moved the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// `classifier`, `rule`, or the scanner's name.
    pub source: String,
    pub name: String,
    pub points: f64,
}

/// An outside scanner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum ScannerOutcome {
    Clean,
    /// A virus (signature names).
    Virus {
        names: Vec<String>,
    },
    /// A spam score (points added to the total) and the scanner's own action, if it gives one.
    Scored {
        points: f64,
        action: Option<String>,
        symbols: Vec<(String, f64)>,
    },
    /// The message was over the size the scanner accepts.
    TooLarge,
    /// The scanner could not be asked or did not answer in time.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScannerResult {
    pub scanner: String,
    #[serde(flatten)]
    pub outcome: ScannerOutcome,
    pub millis: u64,
    /// What a virus found by this scanner does.
    #[serde(default = "reject")]
    pub on_virus: Action,
}

fn reject() -> Action {
    Action::Reject
}

/// The action a scanner's own spam verdict asks for: rspamd's `reject`, `add header` and
/// `rewrite subject`, a generic scanner's `spam`. rspamd's `soft reject` and `greylist` ask
/// for nothing here (Tern greylists itself when configured).
fn scanner_action(action: Option<&str>) -> Option<Action> {
    match action? {
        "reject" => Some(Action::Reject),
        "add header" | "rewrite subject" | "spam" => Some(Action::Junk),
        _ => None,
    }
}

/// Score thresholds and what crossing them does.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub junk: f64,
    /// `None`: off.
    pub quarantine: Option<f64>,
    pub reject: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { junk: 5.0, quarantine: None, reject: Some(15.0) }
    }
}

impl Thresholds {
    pub fn action(&self, score: f64) -> Action {
        if self.reject.is_some_and(|t| score >= t) {
            Action::Reject
        } else if self.quarantine.is_some_and(|t| score >= t) {
            Action::Quarantine
        } else if score >= self.junk {
            Action::Junk
        } else {
            Action::Accept
        }
    }
}

/// The full verdict, stored with the delivery and shown by `tern mail explain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub score: f64,
    pub action: Action,
    /// Why the action, in words (`score 7.2 >= junk 5.0`, `virus Eicar-Signature (clamav)`).
    pub because: String,
    pub reasons: Vec<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judgement: Option<Judgement>,
    /// Set when the classifier has not learnt enough and abstained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstained: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scanners: Vec<ScannerResult>,
    pub junk_threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_threshold: Option<f64>,
}

impl Verdict {
    /// The `X-Tern-Spam` header value: score, action and the strongest reasons.
    pub fn header_value(&self) -> String {
        let mut reasons: Vec<&Reason> = self.reasons.iter().filter(|r| r.points != 0.0).collect();
        reasons.sort_by(|a, b| b.points.abs().total_cmp(&a.points.abs()));
        let listed: Vec<String> =
            reasons.iter().take(6).map(|r| format!("{}({:+.1})", sanitize(&r.name), r.points)).collect();
        let mut v = format!("score={:.1} action={}", self.score, self.action.as_str());
        if let Some(why) = &self.abstained {
            v.push_str(&format!(" classifier=abstained ({})", sanitize(why)));
        }
        if !listed.is_empty() {
            v.push_str(";\r\n\treasons=");
            v.push_str(&listed.join(",\r\n\t "));
        }
        v
    }
}

/// A reason's name as it may appear in a header: printable ASCII, no separators that would
/// confuse a reader, bounded.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() && c != ',' && c != ';' || c == ' ' { c } else { '?' }).take(60).collect()
}

/// A heuristic rule: a documented fact about the message and its points.
pub struct Rule {
    pub name: &'static str,
    pub points: f64,
    pub test: fn(&RuleInput<'_>) -> bool,
}

/// What the rules look at.
pub struct RuleInput<'a> {
    pub facts: &'a Facts,
    /// Names of the message's meta features (`subject:all-capitals`, `attachment:.exe`, ...).
    pub meta: &'a [String],
}

impl RuleInput<'_> {
    fn has(&self, name: &str) -> bool {
        self.meta.iter().any(|m| m == name)
    }
}

const EXECUTABLE: [&str; 12] =
    [".exe", ".scr", ".pif", ".com", ".bat", ".cmd", ".js", ".jse", ".vbs", ".vbe", ".lnk", ".hta"];

/// The heuristic rules (documented in `docs/spam.md`).
pub const RULES: &[Rule] = &[
    Rule { name: "SPF_FAIL", points: 2.0, test: |i| i.facts.result("spf") == Some("fail") },
    Rule { name: "SPF_SOFTFAIL", points: 0.7, test: |i| i.facts.result("spf") == Some("softfail") },
    Rule { name: "DKIM_FAIL", points: 1.0, test: |i| i.facts.result("dkim") == Some("fail") },
    Rule { name: "DMARC_FAIL", points: 2.5, test: |i| i.facts.result("dmarc") == Some("fail") },
    Rule { name: "IPREV_FAIL", points: 1.0, test: |i| matches!(i.facts.result("iprev"), Some("fail" | "permerror")) },
    Rule { name: "DNSBL_LISTED", points: 3.0, test: |i| !i.facts.dnsbl.is_empty() },
    Rule { name: "MISSING_MESSAGE_ID", points: 1.0, test: |i| i.has("message-id:missing") },
    Rule { name: "MISSING_DATE", points: 1.0, test: |i| i.has("date:missing") },
    Rule { name: "MISSING_FROM", points: 1.5, test: |i| i.has("from:missing") },
    Rule { name: "SUBJECT_ALL_CAPITALS", points: 0.5, test: |i| i.has("subject:all-capitals") },
    Rule { name: "FROM_NAME_HAS_ADDRESS", points: 1.0, test: |i| i.has("from-name:has-address") },
    Rule { name: "HTML_ONLY", points: 0.3, test: |i| i.has("body:html-only") },
    Rule {
        name: "EXECUTABLE_ATTACHMENT",
        points: 4.0,
        test: |i| i.meta.iter().any(|m| m.strip_prefix("attachment:").is_some_and(|ext| EXECUTABLE.contains(&ext))),
    },
    Rule { name: "DKIM_DMARC_PASS", points: -1.0, test: |i| i.facts.result("dmarc") == Some("pass") },
];

/// Adds everything up and decides.
pub fn decide(
    judgement: Option<Judgement>,
    abstained: Option<String>,
    rules: &RuleInput<'_>,
    scanners: Vec<ScannerResult>,
    thresholds: &Thresholds,
) -> Verdict {
    let mut reasons = Vec::new();
    if let Some(j) = &judgement
        && abstained.is_none()
    {
        let points = if j.probability >= 0.5 {
            (j.probability - 0.5) * 2.0 * SPAM_POINTS
        } else {
            -(0.5 - j.probability) * 2.0 * HAM_POINTS
        };
        reasons.push(Reason {
            source: "classifier".into(),
            name: format!("BAYES_{:02}", (j.probability * 100.0).floor().min(99.0) as u32),
            points: round(points),
        });
        let (towards_spam, towards_ham) = j.top(3);
        for c in towards_spam.into_iter().chain(towards_ham) {
            reasons.push(Reason { source: "classifier-feature".into(), name: c.feature.clone(), points: 0.0 });
        }
    }
    for rule in RULES {
        if (rule.test)(rules) {
            reasons.push(Reason { source: "rule".into(), name: rule.name.into(), points: rule.points });
        }
    }
    // The most severe action a virus calls for, with its names and scanner.
    let mut virus: Option<(Action, String, String)> = None;
    // The most severe action a scanner's own spam verdict asks for.
    let mut asked: Option<(Action, String)> = None;
    for s in &scanners {
        match &s.outcome {
            ScannerOutcome::Virus { names } => {
                if virus.as_ref().is_none_or(|(a, _, _)| s.on_virus > *a) {
                    virus = Some((s.on_virus, names.join(" "), s.scanner.clone()));
                }
                reasons.push(Reason {
                    source: s.scanner.clone(),
                    name: format!("VIRUS {}", names.join(" ")),
                    points: 0.0,
                });
            }
            ScannerOutcome::Scored { points, action, symbols } => {
                reasons.push(Reason {
                    source: s.scanner.clone(),
                    name: s.scanner.to_uppercase(),
                    points: round(*points),
                });
                for (name, p) in symbols.iter().take(20) {
                    // The scanner's total already counts its symbols: listed, not added.
                    reasons.push(Reason { source: s.scanner.clone(), name: format!("{name}={p:.1}"), points: 0.0 });
                }
                if let Some(a) = scanner_action(action.as_deref())
                    && asked.as_ref().is_none_or(|(b, _)| a > *b)
                {
                    asked = Some((a, format!("{} says {}", s.scanner, action.as_deref().unwrap_or(""))));
                }
            }
            ScannerOutcome::Clean | ScannerOutcome::TooLarge | ScannerOutcome::Failed { .. } => {}
        }
    }
    let score = round(reasons.iter().map(|r| r.points).sum());
    let (action, because) = match virus {
        Some((action, names, scanner)) => (action, format!("virus {names} ({scanner})")),
        None => {
            let action = thresholds.action(score);
            let because = match action {
                Action::Reject => format!("score {score:.1} >= reject {:.1}", thresholds.reject.unwrap_or_default()),
                Action::Quarantine => {
                    format!("score {score:.1} >= quarantine {:.1}", thresholds.quarantine.unwrap_or_default())
                }
                Action::Junk => format!("score {score:.1} >= junk {:.1}", thresholds.junk),
                _ => format!("score {score:.1} < junk {:.1}", thresholds.junk),
            };
            match asked {
                Some((a, why)) if a > action => (a, why),
                _ => (action, because),
            }
        }
    };
    Verdict {
        score,
        action,
        because,
        reasons,
        judgement,
        abstained,
        scanners,
        junk_threshold: thresholds.junk,
        quarantine_threshold: thresholds.quarantine,
        reject_threshold: thresholds.reject,
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(facts: &'a Facts, meta: &'a [String]) -> RuleInput<'a> {
        RuleInput { facts, meta }
    }

    #[test]
    fn thresholds_pick_the_band() {
        let t = Thresholds { junk: 5.0, quarantine: Some(10.0), reject: Some(15.0) };
        assert_eq!(Action::Accept, t.action(4.9));
        assert_eq!(Action::Junk, t.action(5.0));
        assert_eq!(Action::Quarantine, t.action(12.0));
        assert_eq!(Action::Reject, t.action(15.0));
        assert_eq!(Action::Junk, Thresholds { quarantine: None, reject: None, ..t }.action(100.0));
    }

    #[test]
    fn rules_and_a_virus_decide() {
        let facts = Facts::from_authentication_results("mx; spf=fail smtp.mailfrom=a@b; dmarc=fail");
        let meta = vec!["attachment:.exe".to_string()];
        let v = decide(None, Some("not enough learnt".into()), &input(&facts, &meta), vec![], &Thresholds::default());
        assert_eq!(8.5, v.score);
        assert_eq!(Action::Junk, v.action);
        assert!(v.header_value().starts_with("score=8.5 action=junk classifier=abstained"), "{}", v.header_value());
        assert!(v.header_value().contains("EXECUTABLE_ATTACHMENT(+4.0)"), "{}", v.header_value());

        let virus = ScannerResult {
            scanner: "clamav".into(),
            outcome: ScannerOutcome::Virus { names: vec!["Eicar-Signature".into()] },
            millis: 3,
            on_virus: Action::Reject,
        };
        let rspamd = ScannerResult {
            scanner: "rspamd".into(),
            outcome: ScannerOutcome::Scored { points: 3.0, action: Some("add header".into()), symbols: vec![] },
            millis: 3,
            on_virus: Action::Reject,
        };
        let v = decide(None, None, &input(&Facts::default(), &[]), vec![rspamd], &Thresholds::default());
        assert_eq!((Action::Junk, 3.0), (v.action, v.score), "rspamd's action counts: {v:?}");
        assert_eq!("rspamd says add header", v.because);
        let v = decide(None, None, &input(&Facts::default(), &[]), vec![virus], &Thresholds::default());
        assert_eq!(Action::Reject, v.action);
        assert_eq!("virus Eicar-Signature (clamav)", v.because);
    }

    #[test]
    fn header_value_is_safe() {
        let v = Verdict {
            score: 1.0,
            action: Action::Accept,
            because: String::new(),
            reasons: vec![Reason { source: "x".into(), name: "evil\r\nInjected: yes;,".into(), points: 1.0 }],
            judgement: None,
            abstained: None,
            scanners: vec![],
            junk_threshold: 5.0,
            quarantine_threshold: None,
            reject_threshold: None,
        };
        let h = v.header_value();
        assert!(!h.contains("\r\nInjected"), "{h}");
    }
}
