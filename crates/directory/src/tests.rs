use super::*;
use tern_store::embedded::EmbeddedStore;

async fn setup() -> (tempfile::TempDir, Directory) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 8).unwrap();
    let d = Directory::new(Arc::new(store), Some('+'));
    d.domain_add("example.org", None).await.unwrap();
    (dir, d)
}

fn accounts(r: &Resolution) -> Vec<AccountId> {
    match r {
        Resolution::Deliver { accounts, .. } => accounts.iter().map(|a| a.id).collect(),
        other => panic!("expected delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn users_resolve_case_insensitively_and_with_plus_tags() {
    let (_dir, d) = setup().await;
    let (alice, generated) = d.user_add("Alice@Example.org", None).await.unwrap();
    assert_eq!(alice.address, "alice@example.org");
    let password = generated.unwrap();
    assert!(d.authenticate("ALICE@example.ORG", &password).await.unwrap().is_some());
    assert!(d.authenticate("alice@example.org", "wrong").await.unwrap().is_none());
    assert_eq!(accounts(&d.resolve("ALICE@EXAMPLE.ORG").await.unwrap()), vec![alice.id]);
    assert_eq!(accounts(&d.resolve("alice+lists@example.org").await.unwrap()), vec![alice.id]);
    assert_eq!(d.resolve("bob@example.org").await.unwrap(), Resolution::Unknown);
    assert_eq!(d.resolve("alice@elsewhere.test").await.unwrap(), Resolution::NotLocal);
    assert!(matches!(d.user_add("alice@example.org", Some("x")).await, Err(DirectoryError::Exists(_))));
    assert!(matches!(d.user_add("x@unknown.test", Some("x")).await, Err(DirectoryError::UnknownDomain(_))));
}

#[tokio::test]
async fn aliases_expand_recursively_to_local_and_external_targets() {
    let (_dir, d) = setup().await;
    let (alice, _) = d.user_add("alice@example.org", Some("pw")).await.unwrap();
    let (bob, _) = d.user_add("bob@example.org", Some("pw")).await.unwrap();
    d.alias_add("team@example.org", &["alice@example.org".into(), "staff@example.org".into()]).await.unwrap();
    d.alias_add(
        "staff@example.org",
        &["bob@example.org".into(), "carol@external.test".into(), "team@example.org".into()],
    )
    .await
    .unwrap();
    match d.resolve("Team@example.org").await.unwrap() {
        Resolution::Deliver { accounts, external } => {
            let mut accounts: Vec<AccountId> = accounts.iter().map(|a| a.id).collect();
            accounts.sort();
            assert_eq!(accounts, vec![alice.id, bob.id]);
            assert_eq!(external, vec!["carol@external.test".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        d.alias_add("alice@example.org", &["bob@example.org".into()]).await,
        Err(DirectoryError::Exists(_))
    ));
    d.alias_remove("team@example.org", Some("alice@example.org")).await.unwrap();
    assert_eq!(accounts(&d.resolve("team@example.org").await.unwrap()), vec![bob.id]);
    d.alias_remove("team@example.org", None).await.unwrap();
    assert_eq!(d.resolve("team@example.org").await.unwrap(), Resolution::Unknown);
}

#[tokio::test]
async fn catch_all_takes_unknown_local_parts() {
    let (_dir, d) = setup().await;
    let (alice, _) = d.user_add("alice@example.org", Some("pw")).await.unwrap();
    d.domain_set_catch_all("example.org", Some("alice@example.org")).await.unwrap();
    assert_eq!(accounts(&d.resolve("anything@example.org").await.unwrap()), vec![alice.id]);
    d.domain_set_catch_all("example.org", None).await.unwrap();
    assert_eq!(d.resolve("anything@example.org").await.unwrap(), Resolution::Unknown);
}

#[tokio::test]
async fn idna_domains() {
    let (_dir, d) = setup().await;
    d.domain_add("bücher.example", None).await.unwrap();
    let (u, _) = d.user_add("Jörg@BÜCHER.example", Some("pw")).await.unwrap();
    assert_eq!(u.address, "jörg@xn--bcher-kva.example");
    assert_eq!(accounts(&d.resolve("jörg@xn--bcher-kva.example").await.unwrap()), vec![u.id]);
    assert_eq!(accounts(&d.resolve("JÖRG@bücher.example").await.unwrap()), vec![u.id]);
}

#[tokio::test]
async fn domains_in_use_cannot_be_removed() {
    let (_dir, d) = setup().await;
    d.user_add("alice@example.org", Some("pw")).await.unwrap();
    assert!(matches!(d.domain_remove("example.org").await, Err(DirectoryError::DomainInUse { .. })));
    d.user_remove("alice@example.org").await.unwrap();
    d.domain_remove("example.org").await.unwrap();
    assert!(d.domain_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn password_change() {
    let (_dir, d) = setup().await;
    d.user_add("alice@example.org", Some("old")).await.unwrap();
    d.user_set_password("alice@example.org", Some("new")).await.unwrap();
    assert!(d.authenticate("alice@example.org", "old").await.unwrap().is_none());
    assert!(d.authenticate("alice@example.org", "new").await.unwrap().is_some());
}

#[tokio::test]
async fn app_passwords_log_in_until_removed_and_disabled_users_not_at_all() {
    let (_dir, d) = setup().await;
    let (alice, _) = d.user_add("alice@example.org", Some("main pw")).await.unwrap();
    let (record, secret) = d.app_password_add("alice@example.org", "phone").await.unwrap();
    assert_eq!(record.name, "phone");
    assert_eq!(secret.len(), 29, "{secret}");
    assert_ne!(record.hash, secret);
    assert!(matches!(d.app_password_add("alice@example.org", "phone").await, Err(DirectoryError::Exists(_))));
    assert!(matches!(d.app_password_add("alice@example.org", "").await, Err(DirectoryError::Invalid(_))));
    // Both passwords log in; the app password typed without dashes and in capitals too.
    assert_eq!(d.authenticate("alice@example.org", "main pw").await.unwrap().map(|a| a.id), Some(alice.id));
    assert!(d.authenticate("alice@example.org", &secret).await.unwrap().is_some());
    assert!(d.authenticate("alice@example.org", &secret.replace('-', "").to_uppercase()).await.unwrap().is_some());
    assert!(d.authenticate("alice@example.org", "phone").await.unwrap().is_none());
    // Managing the account takes the account's own password, never an app password.
    assert!(d.authenticate_account_password("alice@example.org", "main pw").await.unwrap().is_some());
    assert!(d.authenticate_account_password("alice@example.org", &secret).await.unwrap().is_none());
    // Another user's app password is not a password of this one.
    d.user_add("bob@example.org", Some("bob pw")).await.unwrap();
    assert!(d.authenticate("bob@example.org", &secret).await.unwrap().is_none());

    d.user_set_disabled("alice@example.org", true).await.unwrap();
    assert!(d.authenticate("alice@example.org", "main pw").await.unwrap().is_none());
    assert!(d.authenticate("alice@example.org", &secret).await.unwrap().is_none());
    assert!(d.scram_lookup("alice@example.org").await.unwrap().account.is_none());
    // Mail still arrives.
    assert_eq!(accounts(&d.resolve("alice@example.org").await.unwrap()), vec![alice.id]);
    d.user_set_disabled("alice@example.org", false).await.unwrap();
    assert!(d.authenticate("alice@example.org", "main pw").await.unwrap().is_some());

    d.app_password_remove("alice@example.org", "phone").await.unwrap();
    assert!(d.authenticate("alice@example.org", &secret).await.unwrap().is_none());
    assert!(matches!(d.app_password_remove("alice@example.org", "phone").await, Err(DirectoryError::NotFound(_))));
}
