//! Credentials in `[cluster] nats` URLs: taken out of the URLs (which may be
//! logged) and given to the client as its sign-in.

use super::{split_credentials, NatsAuth};

#[test]
fn credentials_leave_the_nats_urls_and_become_the_sign_in() {
    assert_eq!(
        split_credentials("nats://edge:s3cret@10.0.0.5:4222"),
        (
            "nats://10.0.0.5:4222".to_string(),
            NatsAuth::UserPassword("edge".into(), "s3cret".into())
        )
    );
    assert_eq!(
        split_credentials("tls://a-token@nats.internal:4222"),
        (
            "tls://nats.internal:4222".to_string(),
            NatsAuth::Token("a-token".into())
        )
    );
    // Percent-encoded characters are decoded; an `@` in the password is the
    // last one's business.
    assert_eq!(
        split_credentials("nats://edge:p%40ss%3Aword@10.0.0.5:4222"),
        (
            "nats://10.0.0.5:4222".to_string(),
            NatsAuth::UserPassword("edge".into(), "p@ss:word".into())
        )
    );
    assert_eq!(
        split_credentials("nats://edge:p@ss@10.0.0.5:4222").1,
        NatsAuth::UserPassword("edge".into(), "p@ss".into())
    );
    // A lone or malformed `%` stays as it is.
    assert_eq!(
        split_credentials("nats://edge:100%@h:1").1,
        NatsAuth::UserPassword("edge".into(), "100%".into())
    );
    assert_eq!(
        split_credentials("nats://127.0.0.1:4222"),
        ("nats://127.0.0.1:4222".to_string(), NatsAuth::None)
    );
}

/// A `[cluster]` table on one NATS server with `extra` lines.
fn cluster_config(extra: &str) -> control::ClusterConfig {
    let text = format!(
        "[cluster]\nnode = \"edge-a\"\nnats = [\"nats://127.0.0.1:4222\"]\n\
         advertise_sip = \"127.0.0.2:5060\"\n{extra}"
    );
    control::parse("edge.toml", &text)
        .unwrap()
        .config
        .cluster
        .clone()
        .unwrap()
}

#[test]
fn an_nkey_seed_or_credentials_file_is_read_at_start_and_a_bad_one_named_not_shown() {
    let dir = std::env::temp_dir().join(format!("edge-nkey-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let good = file("user.nk", &format!("{seed}\n"));
    let s = super::sign_in(&cluster_config(&format!("nats_nkey = \"{good}\"\n"))).unwrap();
    assert_eq!(s.servers, ["nats://127.0.0.1:4222"]);
    // An account's seed is not a user's; garbage is not a seed; neither is shown.
    let account = nkeys::KeyPair::new_account().seed().unwrap();
    for (name, text) in [
        ("account.nk", account.as_str()),
        ("junk.nk", "SUnot-a-seed"),
    ] {
        let path = file(name, text);
        let Err(e) = super::sign_in(&cluster_config(&format!("nats_nkey = \"{path}\"\n"))) else {
            panic!("{name} taken as a user seed");
        };
        assert!(
            e.contains("nats_nkey") && e.contains(name) && e.contains("not an NKey user seed"),
            "{e}"
        );
        assert!(!e.contains(text), "the file's contents in the error: {e}");
    }
    // A credentials file without its JWT, and a file that is not there.
    let creds = file(
        "edge.creds",
        &format!("-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"),
    );
    let Err(e) = super::sign_in(&cluster_config(&format!("nats_creds = \"{creds}\"\n"))) else {
        panic!("a credentials file without a JWT accepted");
    };
    assert!(
        e.contains("nats_creds") && e.contains("edge.creds") && !e.contains(&seed),
        "{e}"
    );
    let missing = dir.join("missing.creds").display().to_string();
    let Err(e) = super::sign_in(&cluster_config(&format!("nats_creds = \"{missing}\"\n"))) else {
        panic!("a missing credentials file accepted");
    };
    assert!(e.contains("missing.creds"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
