//! From the generic tree to a checked [`Script`]: every command and test known, required
//! where an extension defines it, with its arguments of the right kinds. Errors name the line
//! and column of what is wrong.

use crate::error::{CompileError, Pos};
use crate::lexer::tokenize;
use crate::program::*;
use crate::syntax::{self, Argument};
use std::collections::BTreeSet;

/// Scripts larger than this are refused before they are read.
pub const MAX_SCRIPT_BYTES: usize = 1 << 20;
/// A `:regex` key's compiled size at most.
pub const MAX_REGEX_BYTES: usize = 1 << 20;

pub fn compile(source: &str) -> Result<Script, CompileError> {
    if source.len() > MAX_SCRIPT_BYTES {
        return Err(CompileError::new(Pos::default(), format!("script larger than {MAX_SCRIPT_BYTES} bytes")));
    }
    if let Some(at) = source.find('\0') {
        let line = source[..at].matches('\n').count() as u32 + 1;
        let column = (at - source[..at].rfind('\n').map_or(0, |n| n + 1)) as u32 + 1;
        return Err(CompileError::new(Pos { line, column }, "a script may not contain NUL"));
    }
    let tree = syntax::parse(&tokenize(source)?)?;
    let mut compiler = Compiler { required: BTreeSet::new() };
    let commands = compiler.block(&tree, true)?;
    Ok(Script { commands, extensions: compiler.required })
}

struct Compiler {
    required: BTreeSet<String>,
}

/// A command's or test's arguments: tags (with the argument each takes, if any) and the
/// positional ones in order.
struct Args {
    name: String,
    pos: Pos,
    tags: Vec<(String, Pos, Option<Argument>)>,
    positional: std::collections::VecDeque<Argument>,
}

/// Tags that take an argument after them.
const TAGS_WITH_VALUE: &[&str] = &[
    "comparator",
    "value",
    "count",
    "index",
    "zone",
    "content",
    "flags",
    "days",
    "seconds",
    "subject",
    "from",
    "addresses",
    "handle",
    "specialuse",
    "mailboxid",
    "header",
    "uniqueid",
];

impl Args {
    fn new(name: &str, pos: Pos, arguments: &[Argument], known: &[&str]) -> Result<Args, CompileError> {
        let mut tags = Vec::new();
        let mut positional = std::collections::VecDeque::new();
        let mut items = arguments.iter();
        while let Some(a) = items.next() {
            match a {
                Argument::Tag(tag, tag_pos) => {
                    if !known.contains(&tag.as_str()) {
                        return Err(CompileError::new(*tag_pos, format!("`{name}` has no tag `:{tag}`")));
                    }
                    if tags.iter().any(|(t, _, _)| t == tag) {
                        return Err(CompileError::new(*tag_pos, format!("`:{tag}` given twice")));
                    }
                    let value = if TAGS_WITH_VALUE.contains(&tag.as_str()) {
                        match items.next() {
                            Some(Argument::Tag(..)) | None => {
                                return Err(CompileError::new(*tag_pos, format!("`:{tag}` needs a value after it")));
                            }
                            Some(v) => Some(v.clone()),
                        }
                    } else {
                        None
                    };
                    tags.push((tag.clone(), *tag_pos, value));
                }
                other => positional.push_back(other.clone()),
            }
        }
        Ok(Args { name: name.to_string(), pos, tags, positional })
    }

    fn take_tag(&mut self, tag: &str) -> Option<(Pos, Option<Argument>)> {
        let i = self.tags.iter().position(|(t, _, _)| t == tag)?;
        let (_, pos, value) = self.tags.remove(i);
        Some((pos, value))
    }

    fn has(&mut self, tag: &str) -> bool {
        self.take_tag(tag).is_some()
    }

    fn strings(&mut self, what: &str) -> Result<(Vec<String>, Pos), CompileError> {
        match self.positional.pop_front() {
            Some(Argument::Strings { strings, pos, .. }) => Ok((strings, pos)),
            Some(other) => Err(CompileError::new(other.pos(), format!("`{}` expects {what} here", self.name))),
            None => Err(CompileError::new(self.pos, format!("`{}` is missing {what}", self.name))),
        }
    }

    fn string(&mut self, what: &str) -> Result<(String, Pos), CompileError> {
        match self.positional.pop_front() {
            Some(Argument::Strings { mut strings, pos, bracketed: false }) if strings.len() == 1 => {
                Ok((strings.remove(0), pos))
            }
            Some(other) => {
                Err(CompileError::new(other.pos(), format!("`{}` expects {what} (one string) here", self.name)))
            }
            None => Err(CompileError::new(self.pos, format!("`{}` is missing {what}", self.name))),
        }
    }

    fn number(&mut self, what: &str) -> Result<u64, CompileError> {
        match self.positional.pop_front() {
            Some(Argument::Number(n, _)) => Ok(n),
            Some(other) => {
                Err(CompileError::new(other.pos(), format!("`{}` expects {what} (a number) here", self.name)))
            }
            None => Err(CompileError::new(self.pos, format!("`{}` is missing {what}", self.name))),
        }
    }

    fn done(&self) -> Result<(), CompileError> {
        if let Some(a) = self.positional.front() {
            return Err(CompileError::new(a.pos(), format!("too many arguments for `{}`", self.name)));
        }
        if let Some((tag, pos, _)) = self.tags.first() {
            return Err(CompileError::new(*pos, format!("`:{tag}` cannot be used here with `{}`", self.name)));
        }
        Ok(())
    }
}

fn value_string(tag: &str, pos: Pos, value: Option<Argument>) -> Result<(String, Pos), CompileError> {
    match value {
        Some(Argument::Strings { mut strings, pos, bracketed: false }) if strings.len() == 1 => {
            Ok((strings.remove(0), pos))
        }
        _ => Err(CompileError::new(pos, format!("`:{tag}` needs one string after it"))),
    }
}

fn value_strings(tag: &str, pos: Pos, value: Option<Argument>) -> Result<Vec<String>, CompileError> {
    match value {
        Some(Argument::Strings { strings, .. }) => Ok(strings),
        _ => Err(CompileError::new(pos, format!("`:{tag}` needs a string list after it"))),
    }
}

fn value_number(tag: &str, pos: Pos, value: Option<Argument>) -> Result<u64, CompileError> {
    match value {
        Some(Argument::Number(n, _)) => Ok(n),
        _ => Err(CompileError::new(pos, format!("`:{tag}` needs a number after it"))),
    }
}

/// Tags of the match, comparator, address-part and index families.
const MATCH_TAGS: &[&str] = &["is", "contains", "matches", "regex", "value", "count", "comparator"];
const ADDRESS_TAGS: &[&str] = &["all", "localpart", "domain", "user", "detail"];
const INDEX_TAGS: &[&str] = &["index", "last"];

fn tags_of(families: &[&[&'static str]]) -> Vec<&'static str> {
    families.iter().flat_map(|f| f.iter().copied()).collect()
}

impl Compiler {
    fn has(&self, extension: &str) -> bool {
        self.required.contains(extension)
    }

    fn need(&self, extension: &str, pos: Pos, what: &str) -> Result<(), CompileError> {
        if self.has(extension) {
            Ok(())
        } else {
            Err(CompileError::new(pos, format!("{what} needs `require \"{extension}\";`")))
        }
    }

    fn block(&mut self, commands: &[syntax::Command], top: bool) -> Result<Block, CompileError> {
        let mut out = Vec::new();
        let mut requires_allowed = top;
        let mut i = 0;
        while i < commands.len() {
            let c = &commands[i];
            i += 1;
            if c.name == "require" {
                if !requires_allowed {
                    return Err(CompileError::new(c.pos, "`require` must come before any other command"));
                }
                self.require(c)?;
                continue;
            }
            requires_allowed = false;
            match c.name.as_str() {
                "if" => {
                    let mut branches = vec![(self.condition(c)?, self.body(c)?)];
                    let mut otherwise = None;
                    while let Some(next) = commands.get(i) {
                        match next.name.as_str() {
                            "elsif" => branches.push((self.condition(next)?, self.body(next)?)),
                            "else" => {
                                if !next.arguments.is_empty() || !next.tests.is_empty() {
                                    return Err(CompileError::new(next.pos, "`else` takes no test"));
                                }
                                otherwise = Some(self.body(next)?);
                                i += 1;
                                break;
                            }
                            _ => break,
                        }
                        i += 1;
                    }
                    out.push(Command::If { branches, otherwise });
                }
                "elsif" | "else" => {
                    return Err(CompileError::new(c.pos, format!("`{}` without an `if` before it", c.name)));
                }
                _ => {
                    if c.block.is_some() {
                        return Err(CompileError::new(c.pos, format!("`{}` takes no block", c.name)));
                    }
                    if !c.tests.is_empty() {
                        return Err(CompileError::new(c.tests[0].pos, format!("`{}` takes no test", c.name)));
                    }
                    out.push(self.command(c)?);
                }
            }
        }
        Ok(out)
    }

    fn require(&mut self, c: &syntax::Command) -> Result<(), CompileError> {
        let mut args = Args::new("require", c.pos, &c.arguments, &[])?;
        let (names, pos) = args.strings("the extensions")?;
        args.done()?;
        for name in names {
            let name = name.to_ascii_lowercase();
            if !EXTENSIONS.contains(&name.as_str()) {
                return Err(CompileError::new(pos, format!("extension `{name}` is not supported")));
            }
            self.required.insert(name);
        }
        Ok(())
    }

    fn condition(&mut self, c: &syntax::Command) -> Result<Test, CompileError> {
        if !c.arguments.is_empty() {
            return Err(CompileError::new(c.arguments[0].pos(), format!("`{}` takes a test, not arguments", c.name)));
        }
        match c.tests.as_slice() {
            [test] => self.test(test),
            [] => Err(CompileError::new(c.pos, format!("`{}` needs a test", c.name))),
            [_, second, ..] => Err(CompileError::new(second.pos, "one test expected (use allof or anyof for several)")),
        }
    }

    fn body(&mut self, c: &syntax::Command) -> Result<Block, CompileError> {
        match &c.block {
            Some(block) => self.block(block, false),
            None => Err(CompileError::new(c.pos, format!("`{}` needs a block `{{ ... }}`", c.name))),
        }
    }

    /// A string argument as a [`Str`]: encoded characters decoded, variables found.
    fn str(&self, text: String, pos: Pos) -> Result<Str, CompileError> {
        let text = if self.has("encoded-character") { decode_encoded_characters(&text, pos)? } else { text };
        if !self.has("variables") || !text.contains("${") {
            return Ok(Str::Literal(text));
        }
        Ok(crate::variables::template(&text))
    }

    fn strs(&self, texts: Vec<String>, pos: Pos) -> Result<Vec<Str>, CompileError> {
        texts.into_iter().map(|t| self.str(t, pos)).collect()
    }

    fn keys(&self, texts: Vec<String>, pos: Pos, matcher: &Matcher) -> Result<Vec<Key>, CompileError> {
        let mut keys = Vec::with_capacity(texts.len());
        for text in texts {
            let text = self.str(text, pos)?;
            let regex = match (&matcher.kind, text.literal()) {
                (MatchKind::Regex, Some(pattern)) => Some(
                    crate::matching::regex(pattern, matcher.comparator)
                        .map_err(|e| CompileError::new(pos, format!("bad regular expression: {e}")))?,
                ),
                _ => None,
            };
            keys.push(Key { text, regex });
        }
        Ok(keys)
    }

    /// `:comparator` and the match type (`:is` by default, `i;ascii-casemap` by default).
    fn matcher(&self, args: &mut Args) -> Result<Matcher, CompileError> {
        let comparator = match args.take_tag("comparator") {
            None => Comparator::AsciiCasemap,
            Some((pos, value)) => {
                let (name, name_pos) = value_string("comparator", pos, value)?;
                match name.to_ascii_lowercase().as_str() {
                    "i;octet" => Comparator::Octet,
                    "i;ascii-casemap" => Comparator::AsciiCasemap,
                    "i;ascii-numeric" => {
                        self.need("comparator-i;ascii-numeric", name_pos, "the comparator `i;ascii-numeric`")?;
                        Comparator::AsciiNumeric
                    }
                    other => return Err(CompileError::new(name_pos, format!("comparator `{other}` is not supported"))),
                }
            }
        };
        let mut kind = None;
        for tag in ["is", "contains", "matches", "regex", "value", "count"] {
            let Some((pos, value)) = args.take_tag(tag) else { continue };
            if kind.is_some() {
                return Err(CompileError::new(pos, "only one match type may be given"));
            }
            kind = Some(match tag {
                "is" => MatchKind::Is,
                "contains" => MatchKind::Contains,
                "matches" => MatchKind::Matches,
                "regex" => {
                    self.need("regex", pos, "`:regex`")?;
                    MatchKind::Regex
                }
                _ => {
                    self.need("relational", pos, &format!("`:{tag}`"))?;
                    let (rel, rel_pos) = value_string(tag, pos, value)?;
                    let relation = match rel.to_ascii_lowercase().as_str() {
                        "gt" => Relation::Gt,
                        "ge" => Relation::Ge,
                        "lt" => Relation::Lt,
                        "le" => Relation::Le,
                        "eq" => Relation::Eq,
                        "ne" => Relation::Ne,
                        _ => {
                            return Err(CompileError::new(
                                rel_pos,
                                format!("`{rel}` is not a relation (gt ge lt le eq ne)"),
                            ));
                        }
                    };
                    if tag == "value" { MatchKind::Value(relation) } else { MatchKind::Count(relation) }
                }
            });
        }
        let kind = kind.unwrap_or(MatchKind::Is);
        if comparator == Comparator::AsciiNumeric
            && matches!(kind, MatchKind::Contains | MatchKind::Matches | MatchKind::Regex)
        {
            return Err(CompileError::new(
                args.pos,
                "`i;ascii-numeric` only compares whole values (:is, :value, :count)",
            ));
        }
        Ok(Matcher { comparator, kind })
    }

    fn address_part(&self, args: &mut Args) -> Result<AddressPart, CompileError> {
        let mut part = None;
        for tag in ADDRESS_TAGS {
            let Some((pos, _)) = args.take_tag(tag) else { continue };
            if part.is_some() {
                return Err(CompileError::new(pos, "only one address part may be given"));
            }
            if matches!(*tag, "user" | "detail") {
                self.need("subaddress", pos, &format!("`:{tag}`"))?;
            }
            part = Some(match *tag {
                "all" => AddressPart::All,
                "localpart" => AddressPart::LocalPart,
                "domain" => AddressPart::Domain,
                "user" => AddressPart::User,
                _ => AddressPart::Detail,
            });
        }
        Ok(part.unwrap_or(AddressPart::All))
    }

    fn index(&self, args: &mut Args) -> Result<Option<Index>, CompileError> {
        let index = args.take_tag("index");
        let last = args.take_tag("last");
        match (index, last) {
            (None, None) => Ok(None),
            (None, Some((pos, _))) => Err(CompileError::new(pos, "`:last` needs `:index`")),
            (Some((pos, value)), last) => {
                self.need("index", pos, "`:index`")?;
                let n = value_number("index", pos, value)?;
                if n == 0 {
                    return Err(CompileError::new(pos, "`:index` counts from 1"));
                }
                Ok(Some(Index { n, last: last.is_some() }))
            }
        }
    }

    fn zone(&self, args: &mut Args) -> Result<Zone, CompileError> {
        match (args.take_tag("zone"), args.take_tag("originalzone")) {
            (Some((pos, _)), Some(_)) => Err(CompileError::new(pos, "`:zone` and `:originalzone` exclude each other")),
            (Some((pos, value)), None) => {
                let (zone, zone_pos) = value_string("zone", pos, value)?;
                parse_zone(&zone)
                    .map(Zone::Fixed)
                    .ok_or_else(|| CompileError::new(zone_pos, format!("`{zone}` is not a zone such as \"+0100\"")))
            }
            (None, Some(_)) => Ok(Zone::Original),
            (None, None) => Ok(Zone::Local),
        }
    }

    fn flags_tag(&self, args: &mut Args) -> Result<Option<Vec<Str>>, CompileError> {
        match args.take_tag("flags") {
            None => Ok(None),
            Some((pos, value)) => {
                self.need("imap4flags", pos, "`:flags`")?;
                Ok(Some(self.strs(value_strings("flags", pos, value)?, pos)?))
            }
        }
    }

    fn command(&mut self, c: &syntax::Command) -> Result<Command, CompileError> {
        let name = c.name.as_str();
        let known: Vec<&str> = match name {
            "keep" => vec!["flags"],
            "fileinto" => vec!["copy", "create", "flags", "specialuse", "mailboxid"],
            "redirect" => vec!["copy"],
            "vacation" => vec!["days", "seconds", "subject", "from", "addresses", "mime", "handle"],
            "addheader" => vec!["last"],
            "deleteheader" => tags_of(&[MATCH_TAGS, INDEX_TAGS]),
            "include" => vec!["personal", "global", "once", "optional"],
            "set" => {
                vec!["lower", "upper", "lowerfirst", "upperfirst", "quotewildcard", "quoteregex", "length", "encodeurl"]
            }
            _ => vec![],
        };
        let mut args = Args::new(name, c.pos, &c.arguments, &known)?;
        let command = match name {
            "stop" => Command::Stop,
            "keep" => Command::Keep { flags: self.flags_tag(&mut args)? },
            "discard" => Command::Discard,
            "redirect" => {
                let copy = match args.take_tag("copy") {
                    Some((pos, _)) => {
                        self.need("copy", pos, "`:copy`")?;
                        true
                    }
                    None => false,
                };
                let (address, pos) = args.string("an address")?;
                if !address.contains("${") && crate::matching::bare_address(&address).is_none() {
                    return Err(CompileError::new(pos, format!("`{address}` is not a mail address")));
                }
                Command::Redirect { address: self.str(address, pos)?, copy }
            }
            "fileinto" => {
                self.need("fileinto", c.pos, "`fileinto`")?;
                let copy = match args.take_tag("copy") {
                    Some((pos, _)) => {
                        self.need("copy", pos, "`:copy`")?;
                        true
                    }
                    None => false,
                };
                let create = match args.take_tag("create") {
                    Some((pos, _)) => {
                        self.need("mailbox", pos, "`:create`")?;
                        true
                    }
                    None => false,
                };
                let flags = self.flags_tag(&mut args)?;
                let special_use = match args.take_tag("specialuse") {
                    Some((pos, value)) => {
                        self.need("special-use", pos, "`:specialuse`")?;
                        let (s, p) = value_string("specialuse", pos, value)?;
                        Some(self.str(s, p)?)
                    }
                    None => None,
                };
                let mailbox_id = match args.take_tag("mailboxid") {
                    Some((pos, value)) => {
                        self.need("mailboxid", pos, "`:mailboxid`")?;
                        let (s, p) = value_string("mailboxid", pos, value)?;
                        Some(self.str(s, p)?)
                    }
                    None => None,
                };
                let (mailbox, pos) = args.string("a mailbox name")?;
                Command::FileInto { mailbox: self.str(mailbox, pos)?, copy, create, flags, special_use, mailbox_id }
            }
            "reject" | "ereject" => {
                self.need(name, c.pos, &format!("`{name}`"))?;
                let (reason, pos) = args.string("a reason")?;
                Command::Reject { reason: self.str(reason, pos)?, extended: name == "ereject" }
            }
            "setflag" | "addflag" | "removeflag" => {
                self.need("imap4flags", c.pos, &format!("`{name}`"))?;
                let op = match name {
                    "setflag" => FlagOp::Set,
                    "addflag" => FlagOp::Add,
                    _ => FlagOp::Remove,
                };
                let (first, first_pos) = args.strings("the flags")?;
                let (variable, flags) = if args.positional.is_empty() {
                    (None, self.strs(first, first_pos)?)
                } else {
                    self.need("variables", first_pos, "a variable name for the flags")?;
                    let [variable]: [String; 1] =
                        first.try_into().map_err(|_| CompileError::new(first_pos, "one variable name expected"))?;
                    let (flags, pos) = args.strings("the flags")?;
                    (Some(self.str(variable, first_pos)?), self.strs(flags, pos)?)
                };
                Command::Flags { op, variable, flags }
            }
            "set" => {
                self.need("variables", c.pos, "`set`")?;
                let mut modifiers = Vec::new();
                for (tag, m) in [
                    ("lower", Modifier::Lower),
                    ("upper", Modifier::Upper),
                    ("lowerfirst", Modifier::LowerFirst),
                    ("upperfirst", Modifier::UpperFirst),
                    ("quotewildcard", Modifier::QuoteWildcard),
                    ("quoteregex", Modifier::QuoteRegex),
                    ("length", Modifier::Length),
                    ("encodeurl", Modifier::EncodeUrl),
                ] {
                    if let Some((pos, _)) = args.take_tag(tag) {
                        if tag == "quoteregex" {
                            self.need("regex", pos, "`:quoteregex`")?;
                        }
                        if modifiers.iter().any(|o: &Modifier| o.precedence() == m.precedence()) {
                            return Err(CompileError::new(pos, "two modifiers of the same precedence"));
                        }
                        modifiers.push(m);
                    }
                }
                modifiers.sort_by_key(|m| std::cmp::Reverse(m.precedence()));
                let (name, pos) = args.string("a variable name")?;
                if !crate::variables::is_name(&name) {
                    return Err(CompileError::new(pos, format!("`{name}` is not a variable name")));
                }
                let (value, value_pos) = args.string("a value")?;
                Command::Set { name: name.to_ascii_lowercase(), modifiers, value: self.str(value, value_pos)? }
            }
            "vacation" => {
                self.need("vacation", c.pos, "`vacation`")?;
                let days =
                    args.take_tag("days").map(|(p, v)| value_number("days", p, v).map(|d| (p, d))).transpose()?;
                let seconds = match args.take_tag("seconds") {
                    Some((p, v)) => {
                        self.need("vacation-seconds", p, "`:seconds`")?;
                        Some((p, value_number("seconds", p, v)?))
                    }
                    None => None,
                };
                let period = match (days, seconds) {
                    (Some((p, _)), Some(_)) => {
                        return Err(CompileError::new(p, "`:days` and `:seconds` exclude each other"));
                    }
                    (Some((_, d)), None) => Some(d.saturating_mul(86_400)),
                    (None, Some((_, s))) => Some(s),
                    (None, None) => None,
                };
                let one = |tag: &str, args: &mut Args| -> Result<Option<Str>, CompileError> {
                    match args.take_tag(tag) {
                        Some((p, v)) => {
                            let (s, sp) = value_string(tag, p, v)?;
                            Ok(Some(self.str(s, sp)?))
                        }
                        None => Ok(None),
                    }
                };
                let subject = one("subject", &mut args)?;
                let from = one("from", &mut args)?;
                let handle = one("handle", &mut args)?;
                let addresses = match args.take_tag("addresses") {
                    Some((p, v)) => self.strs(value_strings("addresses", p, v)?, p)?,
                    None => Vec::new(),
                };
                let mime = args.has("mime");
                let (reason, pos) = args.string("the reason (the reply's text)")?;
                Command::Vacation(Box::new(Vacation {
                    period,
                    subject,
                    from,
                    addresses,
                    mime,
                    handle,
                    reason: self.str(reason, pos)?,
                }))
            }
            "addheader" => {
                self.need("editheader", c.pos, "`addheader`")?;
                let last = args.has("last");
                let (field, pos) = args.string("a field name")?;
                if !field.contains("${") && !crate::matching::is_field_name(&field) {
                    return Err(CompileError::new(pos, format!("`{field}` is not a header field name")));
                }
                let (value, value_pos) = args.string("a value")?;
                Command::AddHeader { last, name: self.str(field, pos)?, value: self.str(value, value_pos)? }
            }
            "deleteheader" => {
                self.need("editheader", c.pos, "`deleteheader`")?;
                let index = self.index(&mut args)?;
                let matcher = self.matcher(&mut args)?;
                let (field, pos) = args.string("a field name")?;
                let patterns = match args.positional.is_empty() {
                    true => None,
                    false => {
                        let (p, ppos) = args.strings("the value patterns")?;
                        Some(self.keys(p, ppos, &matcher)?)
                    }
                };
                Command::DeleteHeader { index, matcher, name: self.str(field, pos)?, patterns }
            }
            "include" => {
                self.need("include", c.pos, "`include`")?;
                let personal = args.take_tag("personal");
                let global = args.take_tag("global");
                if let (Some(_), Some((pos, _))) = (&personal, &global) {
                    return Err(CompileError::new(*pos, "`:personal` and `:global` exclude each other"));
                }
                let once = args.has("once");
                let optional = args.has("optional");
                let (name, pos) = args.string("a script name")?;
                if name.is_empty() || name.contains('/') || name.contains("${") {
                    return Err(CompileError::new(pos, format!("`{name}` is not a script name")));
                }
                Command::Include { name, global: global.is_some(), once, optional }
            }
            "return" => {
                self.need("include", c.pos, "`return`")?;
                Command::Return
            }
            "global" => {
                self.need("include", c.pos, "`global`")?;
                self.need("variables", c.pos, "`global`")?;
                let (names, pos) = args.strings("variable names")?;
                for n in &names {
                    if !crate::variables::is_name(n) {
                        return Err(CompileError::new(pos, format!("`{n}` is not a variable name")));
                    }
                }
                Command::Global { names: names.into_iter().map(|n| n.to_ascii_lowercase()).collect() }
            }
            other => return Err(CompileError::new(c.pos, format!("unknown command `{other}`"))),
        };
        args.done()?;
        Ok(command)
    }

    fn test(&mut self, t: &syntax::Test) -> Result<Test, CompileError> {
        let name = t.name.as_str();
        let takes_tests = matches!(name, "not" | "allof" | "anyof");
        if !takes_tests && !t.tests.is_empty() {
            return Err(CompileError::new(t.tests[0].pos, format!("`{name}` takes no test")));
        }
        let known: Vec<&str> = match name {
            "address" => tags_of(&[MATCH_TAGS, ADDRESS_TAGS, INDEX_TAGS]),
            "envelope" => tags_of(&[MATCH_TAGS, ADDRESS_TAGS]),
            "header" => tags_of(&[MATCH_TAGS, INDEX_TAGS]),
            "size" => vec!["over", "under"],
            "body" => tags_of(&[MATCH_TAGS, &["raw", "content", "text"]]),
            "hasflag" | "string" | "environment" => MATCH_TAGS.to_vec(),
            "date" => tags_of(&[MATCH_TAGS, INDEX_TAGS, &["zone", "originalzone"]]),
            "currentdate" => tags_of(&[MATCH_TAGS, &["zone"]]),
            "spamtest" => tags_of(&[MATCH_TAGS, &["percent"]]),
            "virustest" => MATCH_TAGS.to_vec(),
            "duplicate" => vec!["handle", "header", "uniqueid", "seconds", "last"],
            "specialuse_exists" => vec![],
            _ => vec![],
        };
        let mut args = Args::new(name, t.pos, &t.arguments, &known)?;
        let test = match name {
            "true" => Test::True,
            "false" => Test::False,
            "not" => match t.tests.as_slice() {
                [one] if !matches!(one.name.as_str(), "") => Test::Not(Box::new(self.test(one)?)),
                _ => return Err(CompileError::new(t.pos, "`not` takes one test")),
            },
            "allof" | "anyof" => {
                if t.tests.is_empty() {
                    return Err(CompileError::new(t.pos, format!("`{name}` needs a list of tests")));
                }
                let tests = t.tests.iter().map(|x| self.test(x)).collect::<Result<Vec<_>, _>>()?;
                if name == "allof" { Test::AllOf(tests) } else { Test::AnyOf(tests) }
            }
            "address" => {
                let part = self.address_part(&mut args)?;
                let index = self.index(&mut args)?;
                let matcher = self.matcher(&mut args)?;
                let (headers, hpos) = args.strings("the header names")?;
                let (keys, kpos) = args.strings("the keys")?;
                Test::Address {
                    part,
                    matcher,
                    index,
                    headers: self.strs(headers, hpos)?,
                    keys: self.keys(keys, kpos, &matcher)?,
                }
            }
            "envelope" => {
                self.need("envelope", t.pos, "`envelope`")?;
                let part = self.address_part(&mut args)?;
                let matcher = self.matcher(&mut args)?;
                let (parts, ppos) = args.strings("the envelope parts")?;
                let (keys, kpos) = args.strings("the keys")?;
                Test::Envelope { part, matcher, parts: self.strs(parts, ppos)?, keys: self.keys(keys, kpos, &matcher)? }
            }
            "header" => {
                let index = self.index(&mut args)?;
                let matcher = self.matcher(&mut args)?;
                let (headers, hpos) = args.strings("the header names")?;
                let (keys, kpos) = args.strings("the keys")?;
                Test::Header {
                    matcher,
                    index,
                    headers: self.strs(headers, hpos)?,
                    keys: self.keys(keys, kpos, &matcher)?,
                }
            }
            "exists" => {
                let (headers, pos) = args.strings("the header names")?;
                Test::Exists(self.strs(headers, pos)?)
            }
            "size" => {
                let over = args.take_tag("over");
                let under = args.take_tag("under");
                let over = match (over, under) {
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    _ => return Err(CompileError::new(t.pos, "`size` needs one of `:over` and `:under`")),
                };
                Test::Size { over, limit: args.number("a limit")? }
            }
            "body" => {
                self.need("body", t.pos, "`body`")?;
                let raw = args.take_tag("raw");
                let content = args.take_tag("content");
                let text = args.take_tag("text");
                if [raw.is_some(), content.is_some(), text.is_some()].iter().filter(|x| **x).count() > 1 {
                    return Err(CompileError::new(t.pos, "only one of `:raw`, `:content` and `:text`"));
                }
                let transform = match (raw, content) {
                    (Some(_), _) => BodyTransform::Raw,
                    (_, Some((pos, value))) => {
                        BodyTransform::Content(self.strs(value_strings("content", pos, value)?, pos)?)
                    }
                    _ => BodyTransform::Text,
                };
                let matcher = self.matcher(&mut args)?;
                let (keys, kpos) = args.strings("the keys")?;
                Test::Body { matcher, transform, keys: self.keys(keys, kpos, &matcher)? }
            }
            "hasflag" => {
                self.need("imap4flags", t.pos, "`hasflag`")?;
                let matcher = self.matcher(&mut args)?;
                let (first, fpos) = args.strings("the flags")?;
                if args.positional.is_empty() {
                    Test::HasFlag { matcher, variables: Vec::new(), keys: self.keys(first, fpos, &matcher)? }
                } else {
                    self.need("variables", fpos, "variable names for `hasflag`")?;
                    let (keys, kpos) = args.strings("the flags")?;
                    Test::HasFlag {
                        matcher,
                        variables: self.strs(first, fpos)?,
                        keys: self.keys(keys, kpos, &matcher)?,
                    }
                }
            }
            "string" => {
                self.need("variables", t.pos, "`string`")?;
                let matcher = self.matcher(&mut args)?;
                let (sources, spos) = args.strings("the source strings")?;
                let (keys, kpos) = args.strings("the keys")?;
                Test::String { matcher, sources: self.strs(sources, spos)?, keys: self.keys(keys, kpos, &matcher)? }
            }
            "date" | "currentdate" => {
                self.need("date", t.pos, &format!("`{name}`"))?;
                let index = if name == "date" { self.index(&mut args)? } else { None };
                let zone = self.zone(&mut args)?;
                let matcher = self.matcher(&mut args)?;
                let header = if name == "date" {
                    let (h, hp) = args.string("a header name")?;
                    Some(self.str(h, hp)?)
                } else {
                    None
                };
                let (part, ppos) = args.string("a date part")?;
                if !crate::dates::is_part(&part) {
                    return Err(CompileError::new(ppos, format!("`{part}` is not a date part")));
                }
                let part = self.str(part, ppos)?;
                let (keys, kpos) = args.strings("the keys")?;
                let keys = self.keys(keys, kpos, &matcher)?;
                match header {
                    Some(header) => Test::Date { matcher, zone, index, header, part, keys },
                    None => Test::CurrentDate { matcher, zone, part, keys },
                }
            }
            "spamtest" | "virustest" => {
                if name == "spamtest" && !self.has("spamtestplus") {
                    self.need("spamtest", t.pos, "`spamtest`")?;
                } else if name == "virustest" {
                    self.need("virustest", t.pos, "`virustest`")?;
                }
                let percent = match args.take_tag("percent") {
                    Some((pos, _)) => {
                        self.need("spamtestplus", pos, "`:percent`")?;
                        true
                    }
                    None => false,
                };
                let matcher = self.matcher(&mut args)?;
                let (value, vpos) = args.string("a value")?;
                let value = self.keys(vec![value], vpos, &matcher)?.remove(0);
                if name == "spamtest" {
                    Test::SpamTest { matcher, percent, value }
                } else {
                    Test::VirusTest { matcher, value }
                }
            }
            "duplicate" => {
                self.need("duplicate", t.pos, "`duplicate`")?;
                let handle = args.take_tag("handle").map(|(p, v)| value_string("handle", p, v)).transpose()?;
                let header = args.take_tag("header").map(|(p, v)| value_string("header", p, v)).transpose()?;
                let unique = args.take_tag("uniqueid").map(|(p, v)| value_string("uniqueid", p, v)).transpose()?;
                let source = match (header, unique) {
                    (Some((_, p)), Some(_)) => {
                        return Err(CompileError::new(p, "`:header` and `:uniqueid` exclude each other"));
                    }
                    (Some((h, p)), None) => DuplicateSource::Header(self.str(h, p)?),
                    (None, Some((u, p))) => DuplicateSource::UniqueId(self.str(u, p)?),
                    (None, None) => DuplicateSource::MessageId,
                };
                let seconds = args.take_tag("seconds").map(|(p, v)| value_number("seconds", p, v)).transpose()?;
                let last = args.has("last");
                Test::Duplicate { handle: handle.map(|(h, p)| self.str(h, p)).transpose()?, source, seconds, last }
            }
            "environment" => {
                self.need("environment", t.pos, "`environment`")?;
                let matcher = self.matcher(&mut args)?;
                let (item, ipos) = args.string("an item name")?;
                let (keys, kpos) = args.strings("the keys")?;
                Test::Environment { matcher, name: self.str(item, ipos)?, keys: self.keys(keys, kpos, &matcher)? }
            }
            "mailboxexists" => {
                self.need("mailbox", t.pos, "`mailboxexists`")?;
                let (names, pos) = args.strings("mailbox names")?;
                Test::MailboxExists(self.strs(names, pos)?)
            }
            "mailboxidexists" => {
                self.need("mailboxid", t.pos, "`mailboxidexists`")?;
                let (ids, pos) = args.strings("mailbox ids")?;
                Test::MailboxIdExists(self.strs(ids, pos)?)
            }
            "specialuse_exists" => {
                self.need("special-use", t.pos, "`specialuse_exists`")?;
                let (first, fpos) = args.strings("special uses")?;
                if args.positional.is_empty() {
                    Test::SpecialUseExists { mailbox: None, uses: self.strs(first, fpos)? }
                } else {
                    let [mailbox]: [String; 1] =
                        first.try_into().map_err(|_| CompileError::new(fpos, "one mailbox name expected"))?;
                    let (uses, upos) = args.strings("special uses")?;
                    Test::SpecialUseExists { mailbox: Some(self.str(mailbox, fpos)?), uses: self.strs(uses, upos)? }
                }
            }
            other => return Err(CompileError::new(t.pos, format!("unknown test `{other}`"))),
        };
        args.done()?;
        Ok(test)
    }
}

/// `+hhmm` / `-hhmm` as minutes east of UTC.
pub(crate) fn parse_zone(zone: &str) -> Option<i32> {
    let b = zone.as_bytes();
    if b.len() != 5 || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours = i32::from(b[1] - b'0') * 10 + i32::from(b[2] - b'0');
    let minutes = i32::from(b[3] - b'0') * 10 + i32::from(b[4] - b'0');
    (minutes < 60).then_some(sign * (hours * 60 + minutes))
}

/// RFC 5228 §2.4.2.4: `${hex: 41 42}` and `${unicode: 263a}` replaced by what they encode;
/// anything malformed stays as written.
fn decode_encoded_characters(text: &str, pos: Pos) -> Result<String, CompileError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let decoded = after.find('}').and_then(|end| {
            let inner = &after[..end];
            let (kind, values) = inner.split_once(':')?;
            let words: Vec<&str> = values.split_ascii_whitespace().collect();
            let text = match kind.trim().to_ascii_lowercase().as_str() {
                "hex" => {
                    let bytes = words
                        .iter()
                        .map(|w| (w.len() <= 2).then(|| u8::from_str_radix(w, 16).ok()).flatten())
                        .collect::<Option<Vec<u8>>>()?;
                    String::from_utf8(bytes).ok()?
                }
                "unicode" => words
                    .iter()
                    .map(|w| u32::from_str_radix(w, 16).ok().and_then(char::from_u32))
                    .collect::<Option<String>>()?,
                _ => return None,
            };
            Some((text, end))
        });
        match decoded {
            Some((text, end)) => {
                out.push_str(&text);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    let _ = pos;
    Ok(out)
}

#[cfg(test)]
mod tests;
