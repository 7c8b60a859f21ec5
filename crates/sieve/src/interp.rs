//! Runs a compiled [`Script`] against one message for one recipient: tests evaluated,
//! actions collected (nothing is delivered here), every run bounded by [`Limits`].

use crate::dates;
use crate::error::RuntimeError;
use crate::matching::{self, address_part};
use crate::program::*;
use crate::variables::{Variables, modify};
use mail_parser::MimeHeaders;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Bounds of one run (the CVE-2020-28200 class: no script may run away).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Commands and tests evaluated, plus one per 1,000 bytes a test scans.
    pub steps: u64,
    pub redirects: usize,
    pub actions: usize,
    pub include_depth: usize,
    pub includes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { steps: 100_000, redirects: 4, actions: 32, include_depth: 8, includes: 16 }
    }
}

/// The envelope of the message as this recipient received it.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// The reverse path; `None` for `<>`.
    pub from: Option<String>,
    /// The recipient this run is for.
    pub to: String,
    /// The authenticated submitter, if any.
    pub auth: Option<String>,
}

/// What the script may ask of the server (mailboxes, other scripts, duplicate tracking,
/// scan verdicts). Every method has a harmless default.
pub trait Host {
    fn mailbox_exists(&self, _name: &str) -> bool {
        false
    }
    fn mailbox_id_exists(&self, _id: &str) -> bool {
        false
    }
    /// Whether `mailbox` (any mailbox when `None`) carries every one of `uses`.
    fn special_use_exists(&self, _mailbox: Option<&str>, _uses: &[String]) -> bool {
        false
    }
    /// Another script of the user (or a global one), compiled.
    fn include(&self, name: &str, _global: bool) -> Result<Option<Arc<Script>>, String> {
        Err(format!("no script named `{name}`"))
    }
    /// Whether `id` was seen within `seconds` (RFC 7352); recording happens through
    /// [`Outcome::duplicates`] once the run succeeded.
    fn seen(&self, _id: &str) -> bool {
        false
    }
    /// An `environment` item (RFC 5183), beyond the ones the interpreter knows.
    fn environment(&self, _name: &str) -> Option<String> {
        None
    }
    /// Spam score 0..=10 (RFC 5235 `spamtest`; 0: not tested) and as a percentage.
    fn spam_score(&self) -> Option<(u8, u8)> {
        None
    }
    /// Virus verdict 0..=5 (RFC 5235 `virustest`; 0: not tested, 1: clean, 5: infected).
    fn virus_score(&self) -> Option<u8> {
        None
    }
    /// Unix time now and the server's zone offset (minutes east).
    fn now(&self) -> (i64, i32) {
        (0, 0)
    }
}

/// A host that knows nothing (tests, `check`).
pub struct NoHost;
impl Host for NoHost {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Keep {
        flags: Vec<String>,
    },
    FileInto {
        mailbox: String,
        flags: Vec<String>,
        create: bool,
        special_use: Option<String>,
        mailbox_id: Option<String>,
    },
    Redirect {
        address: String,
    },
    Reject {
        reason: String,
        extended: bool,
    },
    Discard,
    Vacation(VacationReply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacationReply {
    /// Whom to answer (the envelope sender).
    pub to: String,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub reason: String,
    pub mime: bool,
    /// The key of the "already answered" record: the sender and the handle.
    pub handle: String,
    pub period: u64,
    /// The user's addresses from `:addresses` (the recipient is one too).
    pub addresses: Vec<String>,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// In the order the script took them; an implicit keep is added at the end when due.
    pub actions: Vec<Action>,
    /// Why the run ended early (then `actions` is the implicit keep alone).
    pub error: Option<RuntimeError>,
    /// The header as `editheader` left it (`None`: unchanged), each field `Name: value`.
    pub header: Option<Vec<(String, String)>>,
    /// Duplicate ids to record with their period in seconds (RFC 7352).
    pub duplicates: Vec<(String, u64)>,
    pub steps: u64,
    /// The last action is the implicit keep (no action cancelled it).
    pub implicit_keep: bool,
    /// The script ended with `stop` (a script run after it in a sequence does not run).
    pub stopped: bool,
}

/// The message as the tests see it.
pub struct Message<'a> {
    raw: &'a [u8],
    body_offset: usize,
    /// Header fields as (name, raw value), in order (editable).
    fields: Vec<(String, String)>,
    edited: bool,
    /// Decoded values and parsed addresses by field position (cleared by an edit).
    decoded: std::cell::RefCell<HashMap<usize, String>>,
    parsed: std::cell::RefCell<HashMap<usize, Vec<String>>>,
}

impl<'a> Message<'a> {
    pub fn new(raw: &'a [u8]) -> Message<'a> {
        let body_offset = tern_mime::text::header_len(raw);
        let fields = tern_mime::structure::header_fields(&raw[..body_offset])
            .into_iter()
            .map(|f| {
                let value = String::from_utf8_lossy(f.value);
                (String::from_utf8_lossy(f.name).into_owned(), value.trim_end_matches(['\r', '\n']).to_string())
            })
            .collect();
        Message { raw, body_offset, fields, edited: false, decoded: Default::default(), parsed: Default::default() }
    }

    /// Positions of the fields named `name`, narrowed by `:index` (RFC 5260 §4).
    fn positions(&self, name: &str, index: Option<Index>) -> Vec<usize> {
        let all: Vec<usize> =
            self.fields.iter().enumerate().filter(|(_, (n, _))| n.eq_ignore_ascii_case(name)).map(|(i, _)| i).collect();
        match index {
            Some(i) => {
                let n = i.n as usize;
                let one = if i.last { all.len().checked_sub(n).and_then(|k| all.get(k)) } else { all.get(n - 1) };
                one.into_iter().copied().collect()
            }
            None => all,
        }
    }

    /// Decoded values of the fields named `name` (unfolded, encoded words decoded); each
    /// field is decoded once per run (scripts test the same fields rule after rule).
    fn values(&self, name: &str, index: Option<Index>) -> Vec<String> {
        let mut cache = self.decoded.borrow_mut();
        self.positions(name, index)
            .into_iter()
            .map(|at| cache.entry(at).or_insert_with(|| decode_value(&self.fields[at].1)).clone())
            .collect()
    }

    /// Addresses of the fields named `name` (`local@domain`; groups flattened), each field
    /// parsed once per run.
    fn addresses(&self, name: &str, index: Option<Index>) -> Vec<String> {
        let mut cache = self.parsed.borrow_mut();
        let mut out = Vec::new();
        for at in self.positions(name, index) {
            let list = cache.entry(at).or_insert_with(|| parse_addresses(&self.fields[at].1));
            out.extend(list.iter().cloned());
        }
        out
    }

    /// After an edit: positions have moved.
    fn forget_parsed(&mut self) {
        self.decoded.get_mut().clear();
        self.parsed.get_mut().clear();
        self.edited = true;
    }

    fn header_bytes(&self) -> usize {
        self.fields.iter().map(|(n, v)| n.len() + v.len() + 3).sum()
    }

    fn size(&self) -> u64 {
        (self.header_bytes() + 2 + self.raw.len().saturating_sub(self.body_offset)) as u64
    }

    fn body(&self) -> &[u8] {
        &self.raw[self.body_offset.min(self.raw.len())..]
    }
}

/// The addresses of an address-list value (`local@domain`; groups flattened); the value
/// itself when it does not parse.
fn parse_addresses(value: &str) -> Vec<String> {
    let wrapped = format!("To:{value}\r\n\r\n");
    let parsed = mail_parser::MessageParser::default().parse_headers(wrapped.as_bytes());
    match parsed.as_ref().and_then(|m| m.to()) {
        Some(list) => list.iter().filter_map(|a| a.address.as_ref().map(|x| x.to_string())).collect(),
        None => vec![value.trim().to_string()],
    }
}

fn decode_value(raw: &str) -> String {
    let unfolded = String::from_utf8_lossy(&tern_mime::structure::unfold(raw.as_bytes())).into_owned();
    tern_mime::decode::encoded_words(unfolded.trim())
}

/// A header value as RFC 5293 §4 wants it stored: ASCII as is, anything else as RFC 2047
/// encoded words (Q encoding, UTF-8), each at most 75 characters, folded between words.
fn encode_value(value: &str) -> String {
    if value.is_ascii() {
        return value.to_string();
    }
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in value.chars() {
        let mut piece = String::new();
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            match b {
                b' ' => piece.push('_'),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => piece.push(b as char),
                _ => piece.push_str(&format!("={b:02X}")),
            }
        }
        // "=?UTF-8?Q?" + text + "?=" stays within 75 characters.
        if word.len() + piece.len() > 75 - 12 {
            words.push(std::mem::take(&mut word));
        }
        word.push_str(&piece);
    }
    words.push(word);
    words.iter().map(|w| format!("=?UTF-8?Q?{w}?=")).collect::<Vec<_>>().join("\r\n ")
}

/// Header fields a script may neither add nor delete (RFC 5293 §6: trace and loop control).
fn protected(name: &str) -> bool {
    name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("auto-submitted")
}

/// Runs `script`. Never fails: an error ends the run with the implicit keep (reported in
/// [`Outcome::error`]).
pub fn run(script: &Script, raw: &[u8], envelope: &Envelope, host: &dyn Host, limits: &Limits) -> Outcome {
    let mut message = Message::new(raw);
    let mut run = Run {
        host,
        envelope,
        limits,
        steps: 0,
        variables: Variables::default(),
        flags: Vec::new(),
        actions: Vec::new(),
        cancel_keep: false,
        redirects: 0,
        duplicates: Vec::new(),
        included: HashSet::new(),
        includes: 0,
        globals: HashSet::new(),
        depth: 0,
    };
    let result = run.block(&script.commands, &mut message);
    let mut outcome = Outcome { steps: run.steps, ..Outcome::default() };
    match result {
        Ok(flow) => {
            outcome.stopped = matches!(flow, Flow::Stop);
            let mut actions = run.actions;
            if !run.cancel_keep && !actions.iter().any(|a| matches!(a, Action::Keep { .. })) {
                actions.push(Action::Keep { flags: run.flags.clone() });
                outcome.implicit_keep = true;
            }
            outcome.actions = actions;
            outcome.duplicates = run.duplicates;
            if message.edited {
                outcome.header = Some(message.fields);
            }
        }
        Err(error) => {
            outcome.actions = vec![Action::Keep { flags: Vec::new() }];
            outcome.implicit_keep = true;
            outcome.error = Some(error);
        }
    }
    outcome
}

/// Two runs in sequence (RFC 5228 has one script; this is how Dovecot's `sieve_before`
/// composes with a user's script): `second` runs only when `first` did not `stop`; the
/// explicit actions of both are taken, and the implicit keep only when neither cancelled it.
pub fn sequence(first: Outcome, second: impl FnOnce() -> Outcome) -> Outcome {
    if first.stopped {
        return first;
    }
    let second = second();
    let explicit = |o: &Outcome| {
        let n = o.actions.len() - usize::from(o.implicit_keep);
        o.actions[..n].to_vec()
    };
    let mut actions = explicit(&first);
    actions.extend(explicit(&second));
    let implicit_keep = first.implicit_keep && second.implicit_keep;
    if implicit_keep {
        // The keep carries the flags the last script set.
        actions.extend(second.actions.last().cloned());
    }
    let mut duplicates = first.duplicates;
    duplicates.extend(second.duplicates);
    Outcome {
        actions,
        error: second.error.or(first.error),
        header: second.header.or(first.header),
        duplicates,
        steps: first.steps + second.steps,
        implicit_keep,
        stopped: second.stopped,
    }
}

/// How a block ended.
enum Flow {
    Next,
    /// `stop`: the whole run ends.
    Stop,
    /// `return`: the current (included) script ends.
    Return,
}

struct Run<'a> {
    host: &'a dyn Host,
    envelope: &'a Envelope,
    limits: &'a Limits,
    steps: u64,
    variables: Variables,
    /// The internal flags variable of imap4flags (RFC 5232 §3).
    flags: Vec<String>,
    actions: Vec<Action>,
    cancel_keep: bool,
    redirects: usize,
    duplicates: Vec<(String, u64)>,
    included: HashSet<(String, bool)>,
    includes: usize,
    globals: HashSet<String>,
    depth: usize,
}

impl Run<'_> {
    fn step(&mut self, cost: u64) -> Result<(), RuntimeError> {
        self.steps += cost;
        if self.steps > self.limits.steps {
            return Err(RuntimeError::Budget(self.limits.steps));
        }
        Ok(())
    }

    fn expand(&self, s: &Str) -> String {
        self.variables.expand(s)
    }

    fn push(&mut self, action: Action) -> Result<(), RuntimeError> {
        if self.actions.len() >= self.limits.actions {
            return Err(RuntimeError::TooManyActions(self.limits.actions));
        }
        // Identical actions are done once (RFC 5228 §2.10.3).
        if !self.actions.contains(&action) {
            self.actions.push(action);
        }
        Ok(())
    }

    fn block(&mut self, commands: &[Command], message: &mut Message<'_>) -> Result<Flow, RuntimeError> {
        for command in commands {
            self.step(1)?;
            match self.command(command, message)? {
                Flow::Next => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Next)
    }

    fn flag_list(&self, flags: &[Str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in flags {
            for word in self.expand(f).split_ascii_whitespace() {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(word)) {
                    out.push(word.to_string());
                }
            }
        }
        out
    }

    fn command(&mut self, command: &Command, message: &mut Message<'_>) -> Result<Flow, RuntimeError> {
        match command {
            Command::If { branches, otherwise } => {
                for (test, block) in branches {
                    if self.test(test, message)? {
                        return self.block(block, message);
                    }
                }
                if let Some(block) = otherwise {
                    return self.block(block, message);
                }
            }
            Command::Stop => return Ok(Flow::Stop),
            Command::Keep { flags } => {
                let flags = match flags {
                    Some(f) => self.flag_list(f),
                    None => self.flags.clone(),
                };
                self.actions.retain(|a| !matches!(a, Action::Keep { .. }));
                self.push(Action::Keep { flags })?;
            }
            Command::Discard => {
                self.cancel_keep = true;
            }
            Command::Redirect { address, copy } => {
                let address = self.expand(address);
                let Some(address) = matching::bare_address(&address).map(str::to_string) else {
                    return Err(RuntimeError::Conflict(format!("redirect to `{address}`, which is not an address")));
                };
                if self.redirects >= self.limits.redirects {
                    return Err(RuntimeError::TooManyRedirects(self.limits.redirects));
                }
                self.redirects += 1;
                self.push(Action::Redirect { address })?;
                if !copy {
                    self.cancel_keep = true;
                }
            }
            Command::FileInto { mailbox, copy, create, flags, special_use, mailbox_id } => {
                let flags = match flags {
                    Some(f) => self.flag_list(f),
                    None => self.flags.clone(),
                };
                let action = Action::FileInto {
                    mailbox: self.expand(mailbox),
                    flags,
                    create: *create,
                    special_use: special_use.as_ref().map(|s| self.expand(s)),
                    mailbox_id: mailbox_id.as_ref().map(|s| self.expand(s)),
                };
                self.push(action)?;
                if !copy {
                    self.cancel_keep = true;
                }
            }
            Command::Reject { reason, extended } => {
                // RFC 5429 §2.1: reject cannot go with keep, fileinto, redirect or vacation.
                if self.actions.iter().any(|a| !matches!(a, Action::Discard)) {
                    return Err(RuntimeError::Conflict("reject after another action".into()));
                }
                let reason = self.expand(reason);
                self.push(Action::Reject { reason, extended: *extended })?;
                self.cancel_keep = true;
            }
            Command::Flags { op, variable, flags } => {
                let given = self.flag_list(flags);
                let current: Vec<String> = match variable {
                    None => self.flags.clone(),
                    Some(v) => {
                        let name = self.expand(v).to_ascii_lowercase();
                        self.variables.get(&name).split_ascii_whitespace().map(str::to_string).collect()
                    }
                };
                let next: Vec<String> = match op {
                    FlagOp::Set => given,
                    FlagOp::Add => {
                        let mut all = current;
                        for f in given {
                            if !all.iter().any(|o| o.eq_ignore_ascii_case(&f)) {
                                all.push(f);
                            }
                        }
                        all
                    }
                    FlagOp::Remove => {
                        current.into_iter().filter(|o| !given.iter().any(|f| f.eq_ignore_ascii_case(o))).collect()
                    }
                };
                match variable {
                    None => self.flags = next,
                    Some(v) => {
                        let name = self.expand(v).to_ascii_lowercase();
                        if !self.variables.set(&name, next.join(" ")) {
                            return Err(RuntimeError::Conflict("too many variables".into()));
                        }
                    }
                }
            }
            Command::Set { name, modifiers, value } => {
                let value = modify(self.expand(value), modifiers);
                if !self.variables.set(name, value) {
                    return Err(RuntimeError::Conflict("too many variables".into()));
                }
            }
            Command::Vacation(v) => {
                // Never to the null sender (RFC 5230 §4.6); the other RFC 3834 rules are the
                // caller's, who sees the message and the user's addresses.
                let Some(to) = self.envelope.from.clone().filter(|f| !f.is_empty()) else { return Ok(Flow::Next) };
                if self.actions.iter().any(|a| matches!(a, Action::Vacation(_) | Action::Reject { .. })) {
                    return Err(RuntimeError::Conflict("vacation twice, or with reject".into()));
                }
                let reason = self.expand(&v.reason);
                let handle = match &v.handle {
                    Some(h) => self.expand(h),
                    // RFC 5230 §4.2: without :handle, the reply's arguments identify it.
                    None => format!(
                        "{}\u{1}{}\u{1}{}",
                        v.subject.as_ref().map(|s| self.expand(s)).unwrap_or_default(),
                        v.from.as_ref().map(|s| self.expand(s)).unwrap_or_default(),
                        reason
                    ),
                };
                let reply = VacationReply {
                    to,
                    from: v.from.as_ref().map(|s| self.expand(s)),
                    subject: v.subject.as_ref().map(|s| self.expand(s)),
                    reason,
                    mime: v.mime,
                    handle,
                    period: v.period.unwrap_or(7 * 86_400),
                    addresses: v.addresses.iter().map(|a| self.expand(a)).collect(),
                };
                self.push(Action::Vacation(reply))?;
            }
            Command::AddHeader { last, name, value } => {
                let name = self.expand(name);
                let value = self.expand(value);
                if matching::is_field_name(&name) && !protected(&name) {
                    let value = format!(" {}", encode_value(&value.replace(['\r', '\n'], " ")));
                    if *last {
                        message.fields.push((name, value));
                    } else {
                        message.fields.insert(0, (name, value));
                    }
                    message.forget_parsed();
                }
            }
            Command::DeleteHeader { index, matcher, name, patterns } => {
                let name = self.expand(name);
                if protected(&name) {
                    return Ok(Flow::Next);
                }
                let positions: Vec<usize> = message
                    .fields
                    .iter()
                    .enumerate()
                    .filter(|(_, (n, _))| n.eq_ignore_ascii_case(&name))
                    .map(|(i, _)| i)
                    .collect();
                let chosen: Vec<usize> = match index {
                    Some(i) => {
                        let n = i.n as usize;
                        let one = if i.last {
                            positions.len().checked_sub(n).map(|k| positions[k])
                        } else {
                            positions.get(n - 1).copied()
                        };
                        one.into_iter().collect()
                    }
                    None => positions,
                };
                let mut remove = Vec::new();
                for at in chosen {
                    let keep = match patterns {
                        None => false,
                        Some(keys) => {
                            let value = decode_value(&message.fields[at].1);
                            !self.any_key(matcher, std::slice::from_ref(&value), keys)?
                        }
                    };
                    if !keep {
                        remove.push(at);
                    }
                }
                for at in remove.into_iter().rev() {
                    message.fields.remove(at);
                    message.forget_parsed();
                }
            }
            Command::Include { name, global, once, optional } => {
                let key = (name.clone(), *global);
                if *once && self.included.contains(&key) {
                    return Ok(Flow::Next);
                }
                if self.depth >= self.limits.include_depth {
                    return Err(RuntimeError::IncludeDepth(self.limits.include_depth));
                }
                self.includes += 1;
                if self.includes > self.limits.includes {
                    return Err(RuntimeError::Include(name.clone(), "too many includes".into()));
                }
                let script = match self.host.include(name, *global) {
                    Ok(Some(s)) => s,
                    Ok(None) if *optional => return Ok(Flow::Next),
                    Ok(None) => return Err(RuntimeError::Include(name.clone(), "no such script".into())),
                    Err(e) if *optional => {
                        let _ = e;
                        return Ok(Flow::Next);
                    }
                    Err(e) => return Err(RuntimeError::Include(name.clone(), e)),
                };
                self.included.insert(key);
                // RFC 6609 §3.3: only `global` variables are shared with included scripts.
                let saved = std::mem::take(&mut self.variables);
                let mut shared = Variables::default();
                for g in &self.globals {
                    shared.set(g, saved.get(g).to_string());
                }
                self.variables = shared;
                let saved_globals = self.globals.clone();
                self.depth += 1;
                let flow = self.block(&script.commands, message);
                self.depth -= 1;
                let inner = std::mem::replace(&mut self.variables, saved);
                for g in &saved_globals {
                    self.variables.set(g, inner.get(g).to_string());
                }
                // Globals the included script declared become known to the includer too.
                for g in self.globals.clone() {
                    if !saved_globals.contains(&g) {
                        self.variables.set(&g, inner.get(&g).to_string());
                    }
                }
                match flow? {
                    Flow::Stop => return Ok(Flow::Stop),
                    Flow::Return | Flow::Next => {}
                }
            }
            Command::Return => return Ok(Flow::Return),
            Command::Global { names } => {
                for n in names {
                    self.globals.insert(n.clone());
                }
            }
        }
        Ok(Flow::Next)
    }

    /// Whether any of `values` matches any of `keys`; sets the match variables on success
    /// for `:matches` and `:regex`.
    fn any_key(&mut self, matcher: &Matcher, values: &[String], keys: &[Key]) -> Result<bool, RuntimeError> {
        if let MatchKind::Count(_) = matcher.kind {
            let n = values.iter().filter(|v| !v.is_empty()).count();
            for key in keys {
                self.step(1)?;
                if matching::count(matcher, n, &self.expand(&key.text)) {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        for value in values {
            for key in keys {
                self.step(1 + (value.len() as u64) / 1000)?;
                let text = self.variables.expand_cow(&key.text);
                if let Some(captures) = matching::matches(matcher, value, &text, key.regex.as_ref()) {
                    if matches!(matcher.kind, MatchKind::Matches | MatchKind::Regex) {
                        self.variables.set_matches(captures);
                    }
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    fn test(&mut self, test: &Test, message: &mut Message<'_>) -> Result<bool, RuntimeError> {
        self.step(1)?;
        Ok(match test {
            Test::True => true,
            Test::False => false,
            Test::Not(t) => !self.test(t, message)?,
            Test::AllOf(tests) => {
                for t in tests {
                    if !self.test(t, message)? {
                        return Ok(false);
                    }
                }
                true
            }
            Test::AnyOf(tests) => {
                for t in tests {
                    if self.test(t, message)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Address { part, matcher, index, headers, keys } => {
                let mut values = Vec::new();
                for h in headers {
                    for a in message.addresses(&self.variables.expand_cow(h), *index) {
                        if let Some(p) = address_part(&a, *part) {
                            values.push(p);
                        }
                    }
                }
                self.any_key(matcher, &values, keys)?
            }
            Test::Envelope { part, matcher, parts, keys } => {
                let mut values = Vec::new();
                for p in parts {
                    let address = match self.expand(p).to_ascii_lowercase().as_str() {
                        "from" => Some(self.envelope.from.clone().unwrap_or_default()),
                        "to" => Some(self.envelope.to.clone()),
                        "auth" => self.envelope.auth.clone(),
                        _ => None,
                    };
                    let Some(address) = address else { continue };
                    // The null path's parts are all empty (RFC 5228 §5.4).
                    if address.is_empty() {
                        values.push(String::new());
                    } else if let Some(v) = address_part(&address, *part) {
                        values.push(v);
                    }
                }
                self.any_key(matcher, &values, keys)?
            }
            Test::Header { matcher, index, headers, keys } => {
                let mut values = Vec::new();
                for h in headers {
                    values.extend(message.values(&self.variables.expand_cow(h), *index));
                }
                self.any_key(matcher, &values, keys)?
            }
            Test::Exists(headers) => headers.iter().all(|h| {
                let name = self.variables.expand_cow(h);
                message.fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name))
            }),
            Test::Size { over, limit } => {
                let size = message.size();
                if *over { size > *limit } else { size < *limit }
            }
            Test::Body { matcher, transform, keys } => {
                let parts = body_parts(message.body(), message.raw, transform, &self.variables);
                self.step(parts.iter().map(|p| p.len() as u64 / 1000).sum())?;
                self.any_key(matcher, &parts, keys)?
            }
            Test::HasFlag { matcher, variables, keys } => {
                let flags: Vec<String> = if variables.is_empty() {
                    self.flags.clone()
                } else {
                    variables
                        .iter()
                        .flat_map(|v| {
                            let name = self.expand(v).to_ascii_lowercase();
                            self.variables.get(&name).split_ascii_whitespace().map(str::to_string).collect::<Vec<_>>()
                        })
                        .collect()
                };
                // Keys are flag lists too (RFC 5232 §4).
                let mut split_keys = Vec::new();
                for k in keys {
                    for word in self.expand(&k.text).split_ascii_whitespace() {
                        split_keys.push(Key { text: Str::Literal(word.to_string()), regex: k.regex.clone() });
                    }
                }
                self.any_key(matcher, &flags, &split_keys)?
            }
            Test::String { matcher, sources, keys } => {
                let values: Vec<String> = sources.iter().map(|s| self.expand(s)).collect();
                self.any_key(matcher, &values, keys)?
            }
            Test::Date { matcher, zone, index, header, part, keys } => {
                let values: Vec<String> = message
                    .values(&self.expand(header), *index)
                    .iter()
                    .filter_map(|v| dates::parse(v))
                    .filter_map(|(utc, written)| {
                        let offset = match zone {
                            Zone::Original => written,
                            Zone::Fixed(o) => *o,
                            Zone::Local => self.host.now().1,
                        };
                        dates::part(utc, offset, &self.expand(part))
                    })
                    .collect();
                self.any_key(matcher, &values, keys)?
            }
            Test::CurrentDate { matcher, zone, part, keys } => {
                let (now, local) = self.host.now();
                let offset = match zone {
                    Zone::Fixed(o) => *o,
                    _ => local,
                };
                let values: Vec<String> = dates::part(now, offset, &self.expand(part)).into_iter().collect();
                self.any_key(matcher, &values, keys)?
            }
            Test::SpamTest { matcher, percent, value } => {
                let score = match self.host.spam_score() {
                    // RFC 5235 §3.2: 0 when the message was not tested.
                    None => "0".to_string(),
                    Some((ten, pct)) => {
                        if *percent {
                            pct.to_string()
                        } else {
                            ten.to_string()
                        }
                    }
                };
                self.any_key(matcher, &[score], std::slice::from_ref(value))?
            }
            Test::VirusTest { matcher, value } => {
                let score = self.host.virus_score().unwrap_or(0).to_string();
                self.any_key(matcher, &[score], std::slice::from_ref(value))?
            }
            Test::Duplicate { handle, source, seconds, last } => {
                let id = match source {
                    DuplicateSource::MessageId => message.values("message-id", None).into_iter().next(),
                    DuplicateSource::Header(h) => message.values(&self.expand(h), None).into_iter().next(),
                    DuplicateSource::UniqueId(u) => Some(self.expand(u)),
                };
                // RFC 7352 §3.1: a message without the field is never a duplicate.
                let Some(id) = id else { return Ok(false) };
                let key = format!("{}\u{1}{}", handle.as_ref().map(|h| self.expand(h)).unwrap_or_default(), id.trim());
                let seen = self.host.seen(&key);
                if !seen || *last {
                    self.duplicates.push((key, seconds.unwrap_or(7 * 86_400)));
                }
                seen
            }
            Test::Environment { matcher, name, keys } => {
                let name = self.expand(name).to_ascii_lowercase();
                let value = match name.as_str() {
                    "domain" => self.envelope.to.rsplit_once('@').map(|(_, d)| d.to_string()),
                    "host" => self.host.environment("host"),
                    "location" => Some("MDA".to_string()),
                    "name" => Some("Tern".to_string()),
                    "phase" => Some("during".to_string()),
                    "version" => Some(env!("CARGO_PKG_VERSION").to_string()),
                    other => self.host.environment(other),
                };
                match value {
                    Some(v) => self.any_key(matcher, &[v], keys)?,
                    None => false,
                }
            }
            Test::MailboxExists(names) => names.iter().all(|n| self.host.mailbox_exists(&self.variables.expand(n))),
            Test::MailboxIdExists(ids) => ids.iter().all(|n| self.host.mailbox_id_exists(&self.variables.expand(n))),
            Test::SpecialUseExists { mailbox, uses } => {
                let uses: Vec<String> = uses.iter().map(|u| self.expand(u)).collect();
                let mailbox = mailbox.as_ref().map(|m| self.expand(m));
                self.host.special_use_exists(mailbox.as_deref(), &uses)
            }
        })
    }
}

/// The body as `body` compares it (RFC 5173 §5): the raw body, the decoded text parts, or
/// the parts of the given content types.
fn body_parts(body: &[u8], raw: &[u8], transform: &BodyTransform, variables: &Variables) -> Vec<String> {
    match transform {
        BodyTransform::Raw => vec![String::from_utf8_lossy(body).into_owned()],
        BodyTransform::Text | BodyTransform::Content(_) => {
            let Some(message) = mail_parser::MessageParser::default().parse(raw) else { return Vec::new() };
            let wanted: Vec<String> = match transform {
                BodyTransform::Content(types) => {
                    types.iter().map(|t| variables.expand(t).to_ascii_lowercase()).collect()
                }
                _ => vec!["text".to_string()],
            };
            let mut out = Vec::new();
            for part in &message.parts {
                if matches!(part.body, mail_parser::PartType::Multipart(_)) {
                    continue;
                }
                let (ctype, subtype) = match part.content_type() {
                    Some(ct) => (
                        ct.ctype().to_ascii_lowercase(),
                        ct.subtype().map(|s| s.to_ascii_lowercase()).unwrap_or_default(),
                    ),
                    None => ("text".to_string(), "plain".to_string()),
                };
                let full = format!("{ctype}/{subtype}");
                let chosen = wanted.iter().any(|w| w.is_empty() || *w == ctype || *w == full);
                if !chosen {
                    continue;
                }
                match &part.body {
                    mail_parser::PartType::Text(t) | mail_parser::PartType::Html(t) => out.push(t.to_string()),
                    mail_parser::PartType::Binary(b) | mail_parser::PartType::InlineBinary(b) => {
                        out.push(String::from_utf8_lossy(b).into_owned())
                    }
                    _ => {}
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encode_value;

    #[test]
    fn added_values_are_encoded_words_when_not_ascii() {
        assert_eq!(encode_value("plain text"), "plain text");
        assert_eq!(encode_value("Grüße"), "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=");
        let long = encode_value(&"ü".repeat(40));
        for word in long.split("\r\n ") {
            assert!(word.len() <= 75 && word.starts_with("=?UTF-8?Q?") && word.ends_with("?="), "{word}");
        }
        assert_eq!(tern_mime::decode::encoded_words(&long.replace("\r\n ", " ")), "ü".repeat(40));
    }
}
