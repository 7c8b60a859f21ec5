use super::*;

fn error(script: &str) -> CompileError {
    compile(script).expect_err("should not compile")
}

#[test]
fn base_language_compiles() {
    let script = compile(
        "require [\"fileinto\", \"envelope\"];\n\
         if anyof (header :contains \"subject\" \"$$$\", size :over 1M) { discard; stop; }\n\
         elsif envelope :localpart :is \"from\" \"root\" { fileinto \"Admin\"; }\n\
         else { keep; }",
    )
    .unwrap();
    assert_eq!(script.commands.len(), 1);
    assert!(script.extensions.contains("fileinto"));
}

#[test]
fn errors_name_the_place() {
    let e = error("require \"fileinto\";\nkeep;\nfileinto;");
    assert_eq!(e.pos.line, 3, "{e}");
    assert!(e.message.contains("mailbox"), "{e}");
    let e = error("keep;\n  fileinto \"x\";");
    assert_eq!((e.pos.line, e.pos.column), (2, 3));
    assert!(e.message.contains("require \"fileinto\""), "{e}");
    assert!(error("frobnicate;").message.contains("unknown command"));
    assert!(error("if frob { keep; }").message.contains("unknown test"));
    assert!(error("keep; require \"fileinto\";").message.contains("before"));
    assert!(error("require \"x-unknown\";").message.contains("not supported"));
    assert!(error("if header :is :contains \"a\" \"b\" { }").message.contains("one match type"));
    assert!(error("if header :regex \"a\" \"b\" { }").message.contains("require \"regex\""));
    assert!(error("require \"regex\"; if header :regex \"a\" \"(\" { }").message.contains("regular expression"));
    assert!(error("if size 10 { }").message.contains(":over"));
    assert!(error("else { }").message.contains("without an `if`"));
    assert!(error("redirect \"not an address\";").message.contains("not a mail address"));
    assert!(error("keep :flags \"x\";").message.contains("imap4flags"));
    assert!(error("if header \"a\" { }").message.contains("keys"));
    assert!(error("stop \"x\";").message.contains("too many"));
    assert!(error("if header :comparator \"i;nope\" \"a\" \"b\" { }").message.contains("not supported"));
    assert!(error("require \"date\"; if date \"date\" \"fortnight\" \"x\" { }").message.contains("date part"));
    assert!(error("require \"vacation\"; vacation :days 1 :seconds 2 \"x\";").message.contains("require"));
    assert!(
        error("require [\"vacation\", \"vacation-seconds\"]; vacation :days 1 :seconds 2 \"x\";")
            .message
            .contains("exclude")
    );
    assert!(error("require \"index\"; if header :last \"a\" \"b\" { }").message.contains(":index"));
}

#[test]
fn every_extension_is_accepted_by_require() {
    for ext in EXTENSIONS {
        compile(&format!("require \"{ext}\";")).unwrap();
    }
}

#[test]
fn encoded_characters_decode() {
    let s =
        compile("require [\"encoded-character\", \"fileinto\"]; fileinto \"${hex:48 65}${unicode:263a}${hex:zz}\";")
            .unwrap();
    let Command::FileInto { mailbox, .. } = &s.commands[0] else { panic!() };
    assert_eq!(mailbox, &Str::Literal("He\u{263a}${hex:zz}".into()));
}

#[test]
fn nul_is_refused_with_its_place() {
    let e = error("keep;\n# a\0b\n");
    assert_eq!((e.pos.line, e.pos.column), (2, 4));
}

#[test]
fn oversized_script_is_refused() {
    let big = format!("# {}\nkeep;", "x".repeat(MAX_SCRIPT_BYTES));
    assert!(error(&big).message.contains("larger"));
}

proptest::proptest! {
    /// Arbitrary text never panics the compiler.
    #[test]
    fn arbitrary_scripts_do_not_panic(s in "\\PC{0,200}") {
        let _ = compile(&s);
    }

    /// Scripts made of real tokens in random order never panic either.
    #[test]
    fn token_soup_does_not_panic(words in proptest::collection::vec(proptest::sample::select(vec![
        "if", "elsif", "else", "require", "\"fileinto\"", "fileinto", "header", ":is", ":matches", ":regex",
        "\"a\"", "[", "]", "(", ")", "{", "}", ";", ",", "not", "allof", "anyof", "size", ":over", "10K",
        "keep", "stop", "set", "\"${1}\"", ":count", "\"ge\"", ":index", "1", ":last", "text:\n.\n",
    ]), 0..40)) {
        let _ = compile(&words.join(" "));
    }
}
