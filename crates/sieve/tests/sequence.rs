//! The admin's script before the user's (`tern_sieve::sequence`).

use tern_sieve::{Action, Envelope, Limits, NoHost, Outcome, compile, run, sequence};

const MESSAGE: &[u8] = b"From: d@origin.test\r\nSubject: offer\r\nX-Spam: yes\r\n\r\nbody\r\n";

fn outcome(source: &str) -> Outcome {
    let script = compile(source).unwrap();
    let envelope = Envelope { from: Some("d@origin.test".into()), to: "alice@example.test".into(), auth: None };
    run(&script, MESSAGE, &envelope, &NoHost, &Limits::default())
}

fn kinds(o: &Outcome) -> Vec<String> {
    o.actions
        .iter()
        .map(|a| match a {
            Action::Keep { flags } => format!("keep{flags:?}"),
            Action::FileInto { mailbox, .. } => format!("fileinto {mailbox}"),
            Action::Discard => "discard".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn stop_in_the_first_ends_the_sequence() {
    let first = outcome("require \"fileinto\"; if header :is \"x-spam\" \"yes\" { fileinto \"Junk\"; stop; }");
    let o = sequence(first, || outcome("require \"fileinto\"; fileinto \"Never\";"));
    assert_eq!(kinds(&o), ["fileinto Junk"]);
}

#[test]
fn actions_add_up_and_the_implicit_keep_needs_both() {
    // An explicit keep is taken once: the second's implicit keep adds no second copy.
    let o = sequence(outcome("keep;"), || outcome("require \"imap4flags\"; addflag \"\\\\Seen\";"));
    assert_eq!(kinds(&o), ["keep[]"]);
    // Neither acts: the one implicit keep carries the flags the second set.
    let o = sequence(outcome("# nothing"), || outcome("require \"imap4flags\"; addflag \"\\\\Seen\";"));
    assert_eq!(kinds(&o), ["keep[\"\\\\Seen\"]"]);
    let o = sequence(outcome("require \"imap4flags\"; addflag \"$A\";"), || {
        outcome("require \"fileinto\"; fileinto \"Lists\";")
    });
    assert_eq!(kinds(&o), ["fileinto Lists"], "the second cancelled the implicit keep");
    let o = sequence(outcome("require \"fileinto\"; fileinto \"Archive\";"), || outcome("# nothing"));
    assert_eq!(kinds(&o), ["fileinto Archive"], "the first cancelled it");
    let o = sequence(outcome("# nothing"), || outcome("# nothing"));
    assert_eq!(kinds(&o), ["keep[]"]);
    assert!(o.implicit_keep);
}
