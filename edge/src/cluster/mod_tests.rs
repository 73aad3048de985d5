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
