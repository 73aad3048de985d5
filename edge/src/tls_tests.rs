//! Loading `[tls]`: a good pair loads; each bad file is named with what is wrong.

use super::*;

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(tag: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("edge-tls-unit-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pair() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["edge.test".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn config(cert: PathBuf, key: PathBuf) -> control::TlsConfig {
    control::TlsConfig {
        cert,
        key,
        ca: None,
    }
}

#[test]
fn a_ca_file_is_loaded_and_a_bad_one_is_named() {
    let f = Files::new("ca");
    let (cert, key) = pair();
    let mut c = config(f.write("c.pem", &cert), f.write("k.pem", &key));
    c.ca = Some(f.write("ca.pem", &cert));
    assert!(client_config_or_warn(&c, "unused").unwrap().is_some());
    c.ca = Some(f.write("bad-ca.pem", "not a certificate\n"));
    let e = client_config_or_warn(&c, "unused").unwrap_err().to_string();
    assert!(e.contains("[tls] ca") && e.contains("bad-ca.pem"), "{e}");
    c.ca = Some(f.dir.join("missing-ca.pem"));
    let e = client_config_or_warn(&c, "unused").unwrap_err().to_string();
    assert!(e.contains("missing-ca.pem"), "{e}");
}

#[test]
fn a_matching_pair_loads() {
    let f = Files::new("ok");
    let (cert, key) = pair();
    let c = config(f.write("c.pem", &cert), f.write("k.pem", &key));
    server_config(&c).unwrap();
}

#[test]
fn each_bad_file_is_named_with_the_reason() {
    let f = Files::new("bad");
    let (cert, key) = pair();
    let (good_cert, good_key) = (f.write("c.pem", &cert), f.write("k.pem", &key));

    let missing = f.dir.join("nope.pem");
    let e = server_config(&config(missing.clone(), good_key.clone()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[tls] cert") && e.contains("nope.pem"), "{e}");

    let e = server_config(&config(f.write("empty.pem", "hello\n"), good_key.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("empty.pem") && e.contains("no CERTIFICATE"),
        "{e}"
    );

    let e = server_config(&config(good_cert.clone(), good_cert.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[tls] key") && e.contains("no PRIVATE KEY"),
        "{e}"
    );

    let (_, other_key) = pair();
    let e = server_config(&config(good_cert.clone(), f.write("other.pem", &other_key)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c.pem") && e.contains("other.pem"),
        "a mismatched pair names both: {e}"
    );
    assert!(
        !e.contains("PRIVATE KEY-----"),
        "no key material in errors: {e}"
    );
}
