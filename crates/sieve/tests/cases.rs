//! Language tests as data: each `tests/cases/*.case` holds a script, a message, an envelope
//! and the actions expected (or the compile error). See `tests/cases/README.md`.

use std::collections::HashMap;
use std::sync::Arc;
use tern_sieve::{Action, Envelope, Host, Limits, Script, compile, run};

struct Case {
    sections: HashMap<String, String>,
}

impl Case {
    fn parse(text: &str) -> Case {
        let mut sections = HashMap::new();
        let mut current: Option<(String, String)> = None;
        for line in text.split_inclusive('\n') {
            if let Some(name) = line.strip_prefix("== ") {
                if let Some((n, body)) = current.take() {
                    sections.insert(n, body);
                }
                current = Some((name.trim().to_string(), String::new()));
            } else if let Some((_, body)) = current.as_mut() {
                body.push_str(line);
            }
        }
        if let Some((n, body)) = current {
            sections.insert(n, body);
        }
        Case { sections }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.sections.get(name).map(String::as_str)
    }
}

struct CaseHost {
    mailboxes: Vec<String>,
    /// `(name, special use, id)` from the `special-use` and `mailbox-ids` sections.
    special_use: Vec<(String, String)>,
    mailbox_ids: Vec<String>,
    scripts: HashMap<String, Arc<Script>>,
    seen: Vec<String>,
    spam: Option<(u8, u8)>,
    virus: Option<u8>,
}

impl Host for CaseHost {
    fn mailbox_exists(&self, name: &str) -> bool {
        self.mailboxes.iter().any(|m| m == name)
    }
    fn mailbox_id_exists(&self, id: &str) -> bool {
        self.mailbox_ids.iter().any(|m| m == id)
    }
    fn special_use_exists(&self, mailbox: Option<&str>, uses: &[String]) -> bool {
        let has = |name: &str, u: &str| self.special_use.iter().any(|(n, s)| n == name && s.eq_ignore_ascii_case(u));
        match mailbox {
            Some(name) => uses.iter().all(|u| has(name, u)),
            None => uses.iter().all(|u| self.special_use.iter().any(|(_, s)| s.eq_ignore_ascii_case(u))),
        }
    }
    fn include(&self, name: &str, _global: bool) -> Result<Option<Arc<Script>>, String> {
        Ok(self.scripts.get(name).cloned())
    }
    fn seen(&self, id: &str) -> bool {
        self.seen.iter().any(|s| id.ends_with(s.as_str()))
    }
    fn spam_score(&self) -> Option<(u8, u8)> {
        self.spam
    }
    fn virus_score(&self) -> Option<u8> {
        self.virus
    }
    fn now(&self) -> (i64, i32) {
        (1_128_222_267, 60) // 2005-10-02T03:04:27Z, server in +0100
    }
}

/// The actions as the `expect` section writes them, one per line.
fn describe(action: &Action) -> String {
    match action {
        Action::Keep { flags } if flags.is_empty() => "keep".into(),
        Action::Keep { flags } => format!("keep flags {}", flags.join(" ")),
        Action::FileInto { mailbox, flags, create, special_use, mailbox_id } => {
            let mut s = format!("fileinto {mailbox}");
            if *create {
                s.push_str(" create");
            }
            if let Some(u) = special_use {
                s.push_str(&format!(" specialuse {u}"));
            }
            if let Some(id) = mailbox_id {
                s.push_str(&format!(" mailboxid {id}"));
            }
            if !flags.is_empty() {
                s.push_str(&format!(" flags {}", flags.join(" ")));
            }
            s
        }
        Action::Redirect { address } => format!("redirect {address}"),
        Action::Reject { reason, extended } => {
            format!("{} {}", if *extended { "ereject" } else { "reject" }, reason.trim_end())
        }
        Action::Discard => "discard".into(),
        Action::Vacation(v) => {
            format!("vacation to {} period {} subject {}", v.to, v.period, v.subject.as_deref().unwrap_or("-"))
        }
    }
}

fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn run_case(path: &std::path::Path) -> Result<(), String> {
    let case = Case::parse(&std::fs::read_to_string(path).map_err(|e| e.to_string())?);
    let source = case.get("script").ok_or("no script section")?;
    let expect: Vec<&str> = case.get("expect").unwrap_or("").lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let script = match compile(source) {
        Ok(s) => s,
        Err(e) => {
            // `compile-error LINE text`
            let wanted =
                expect.first().and_then(|l| l.strip_prefix("compile-error ")).ok_or(format!("compile error: {e}"))?;
            let (line, text) = wanted.split_once(' ').unwrap_or((wanted, ""));
            if e.pos.line.to_string() != line || !e.message.contains(text) {
                return Err(format!("compile error `{e}`, expected line {line} with `{text}`"));
            }
            return Ok(());
        }
    };
    if expect.first().is_some_and(|l| l.starts_with("compile-error")) {
        return Err("compiled, but an error was expected".into());
    }
    let mut scripts = HashMap::new();
    for (name, body) in &case.sections {
        if let Some(included) = name.strip_prefix("include ") {
            let s = compile(body).map_err(|e| format!("include {included}: {e}"))?;
            scripts.insert(included.to_string(), Arc::new(s));
        }
    }
    let mut envelope = Envelope { from: Some("sender@example.com".into()), to: "me@example.org".into(), auth: None };
    for line in case.get("envelope").unwrap_or("").lines() {
        match line.split_once(' ') {
            Some(("from", v)) => envelope.from = (v.trim() != "<>").then(|| v.trim().to_string()),
            Some(("to", v)) => envelope.to = v.trim().to_string(),
            Some(("auth", v)) => envelope.auth = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let host = CaseHost {
        mailboxes: case.get("mailboxes").unwrap_or("").split_whitespace().map(str::to_string).collect(),
        special_use: case
            .get("special-use")
            .unwrap_or("")
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(n, u)| (n.to_string(), u.trim().to_string())))
            .collect(),
        mailbox_ids: case.get("mailbox-ids").unwrap_or("").split_whitespace().map(str::to_string).collect(),
        scripts,
        seen: case.get("seen").unwrap_or("").lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect(),
        spam: case.get("spam").and_then(|s| {
            let mut w = s.split_whitespace().map(|x| x.parse().ok());
            Some((w.next()??, w.next()??))
        }),
        virus: case.get("virus").and_then(|s| s.trim().parse().ok()),
    };
    let message = crlf(case.get("message").unwrap_or("Subject: empty\n\nbody\n"));
    let outcome = run(&script, message.as_bytes(), &envelope, &host, &Limits::default());
    let mut got: Vec<String> = outcome.actions.iter().map(describe).collect();
    if let Some(e) = &outcome.error {
        got.push(format!("error {e}"));
    }
    if let Some(header) = &outcome.header {
        for (name, value) in header {
            got.push(format!("header {name}:{value}"));
        }
    }
    for (id, seconds) in &outcome.duplicates {
        got.push(format!("duplicate {} {seconds}", id.replace('\u{1}', "|")));
    }
    let matches = got.len() == expect.len()
        && got.iter().zip(&expect).all(|(g, e)| g == e || (e.ends_with('*') && g.starts_with(&e[..e.len() - 1])));
    if !matches {
        return Err(format!("got:\n  {}\nexpected:\n  {}", got.join("\n  "), expect.join("\n  ")));
    }
    Ok(())
}

#[test]
fn language_cases() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "case"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 30, "only {} cases", paths.len());
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| run_case(p).err().map(|e| format!("{}: {e}", p.file_name().unwrap().to_string_lossy())))
        .collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), paths.len(), failures.join("\n\n"));
}
