use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"))
}

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.data_dir, default_data_dir());
    assert!(c.data_dir.is_absolute(), "the default does not depend on the working directory");
    assert_eq!(c.smtp.max_message_size, 50 * 1024 * 1024);
    assert_eq!(c.smtp.max_recipients, 100);
    assert_eq!(c.listen.smtp.len(), 2);
    assert_eq!(c.listen.smtp[0].port(), 25);
    assert_eq!(c.listen.imaps[0].port(), 993);
    assert_eq!(c.plus_separator(), Some('+'));
}

#[test]
fn listeners_parse_and_empty_list_turns_off() {
    let c = parse(
        r#"
        hostname = "mx.example.org"
        [listen]
        smtp = ["127.0.0.1:2525", "[::1]:2525"]
        imap = []
        "#,
    )
    .unwrap();
    assert_eq!(c.hostname, "mx.example.org");
    assert_eq!(c.listen.smtp.len(), 2);
    assert!(c.listen.imap.is_empty());
    assert_eq!(c.listen.pop3[0].port(), 110, "unset services keep their defaults");
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let e = parse("hostnme = \"x\"").unwrap_err().to_string();
    assert!(e.contains("hostnme"), "{e}");
    let e = parse("[smtp]\nmax_mesage_size = 10").unwrap_err().to_string();
    assert!(e.contains("max_mesage_size"), "{e}");
    let e = parse("[listen]\nsmtpp = []").unwrap_err().to_string();
    assert!(e.contains("smtpp"), "{e}");
}

#[test]
fn bad_values_are_refused_with_their_key() {
    let e = parse("[listen]\nsmtp = [\"not an address\"]").unwrap_err().to_string();
    assert!(e.contains("smtp"), "{e}");
    let e = parse("[smtp]\nmax_recipients = 0").unwrap_err().to_string();
    assert!(e.contains("smtp.max_recipients"), "{e}");
    let e = parse("[smtp]\nmax_message_size = -1").unwrap_err().to_string();
    assert!(e.contains("max_message_size"), "{e}");
    let e = parse("hostname = \"bad host!\"").unwrap_err().to_string();
    assert!(e.contains("hostname"), "{e}");
    let e = parse("[tls]\ncert = \"/x.pem\"").unwrap_err().to_string();
    assert!(e.contains("tls.key"), "{e}");
    let e = parse("[limits]\nexempt = [\"10.0.0.0/33\"]").unwrap_err().to_string();
    assert!(e.contains("limits.exempt"), "{e}");
    let e = parse("[imap]\ntimeout_seconds = 5").unwrap_err().to_string();
    assert!(e.contains("imap.timeout_seconds"), "{e}");
    let e = parse("[log]\nformat = \"xml\"").unwrap_err().to_string();
    assert!(e.contains("format"), "{e}");
    let e = parse("[directory]\nplus_separator = \"ab\"").unwrap_err().to_string();
    assert!(e.contains("directory.plus_separator"), "{e}");
    for level in ["verbose!!", "", "tern_smtp=loud", "=info", "info,debug=x"] {
        let e = parse(&format!("[log]\nlevel = {level:?}")).unwrap_err().to_string();
        assert!(e.contains("log.level"), "{level:?}: {e}");
    }
    for level in ["info", "DEBUG", "tern_smtp=debug,info", "off", "tern_store::embedded=trace,warn"] {
        parse(&format!("[log]\nlevel = {level:?}")).unwrap_or_else(|e| panic!("{level:?}: {e}"));
    }
    let e = parse("[spam]\njunk_score = 0").unwrap_err().to_string();
    assert!(e.contains("spam.junk_score"), "{e}");
    let e = parse("[spam]\nreject_score = 2").unwrap_err().to_string();
    assert!(e.contains("spam.reject_score"), "{e}");
    let e = parse("[[scanner]]\nname = \"c\"\nkind = \"clamd\"").unwrap_err().to_string();
    assert!(e.contains("address"), "{e}");
    let e = parse("[[scanner]]\nname = \"r\"\nkind = \"rspamd\"\nurl = \"ftp://x\"").unwrap_err().to_string();
    assert!(e.contains("url"), "{e}");
    let e = parse("[[scanner]]\nname = \"a b\"\nkind = \"clamd\"\naddress = \"/s\"").unwrap_err().to_string();
    assert!(e.contains("name"), "{e}");
    let e = parse("[alerts]\nwebhook = \"mailto:x\"").unwrap_err().to_string();
    assert!(e.contains("alerts.webhook"), "{e}");
    let e = parse("[quarantine]\nretention_days = 0").unwrap_err().to_string();
    assert!(e.contains("quarantine.retention_days"), "{e}");
}

#[test]
fn dev_ports_are_high_and_loopback() {
    let mut c = parse("").unwrap();
    c.apply_dev_ports();
    for s in Service::ALL {
        for a in c.listen.addrs(s) {
            assert!(a.port() >= 1024, "{s:?} {a}");
            assert!(is_loopback(a));
        }
    }
    assert_eq!(c.listen.smtp[0].port(), 2525);
    assert_eq!(c.listen.managesieve[0].port(), 14190);
    assert_eq!(parse("").unwrap().listen.managesieve[0].port(), 4190, "on by default at the standard port");
}

#[test]
fn cidr_matching() {
    let n = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(n.contains("10.1.200.3".parse().unwrap()));
    assert!(!n.contains("10.2.0.1".parse().unwrap()));
    let l = Cidr::parse("127.0.0.0/8").unwrap();
    assert!(l.contains("::ffff:127.0.0.1".parse().unwrap()), "v4-mapped v6");
    let v6 = Cidr::parse("2001:db8::/32").unwrap();
    assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
    assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    assert!(Cidr::parse("nonsense").is_err());
}

#[test]
fn documented_example_config_parses() {
    // docs/config.md carries a complete example between ```toml fences: it must stay valid.
    let doc = include_str!("../../../docs/config.md");
    let start = doc.find("```toml\n").expect("docs/config.md has a ```toml block") + 8;
    let end = start + doc[start..].find("```").expect("closing fence");
    let c = parse(&doc[start..end]).unwrap();
    assert_eq!(c.smtp.max_recipients, 100);
}
