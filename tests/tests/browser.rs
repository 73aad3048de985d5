//! A real browser: Debian's chromium, headless, driven by playwright-core
//! (tests/browser/chat.mjs) opens /chat as a customer and /console as an agent and
//! as a supervisor, exchanges messages, refreshes the customer page and sees the chat
//! restored. `.ci/run` installs chromium and the npm package.

use edge_tests::{have_tool, run_with_timeout, Edge, AGENT_TOKEN};
use std::path::Path;
use std::process::Command;

const EXTRA: &str = r#"
[[queues]]
name = "web"
channel = "chat"
agents = ["ann"]
[[users]]
name = "sam"
role = "supervisor"
token = "sam-token-1"
[chat]
canned_responses = ["Thanks for waiting!"]
"#;

#[test]
fn customer_agent_and_supervisor_in_chromium() {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../tests/browser");
    let module = dir.join("node_modules/playwright-core");
    if !have_tool("node") || !have_tool("chromium") {
        return;
    }
    if !module.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "playwright-core is required under CI (npm ci in tests/browser: see .ci/run)"
        );
        eprintln!("SKIP: run `npm ci` in tests/browser");
        return;
    }
    let edge = Edge::start_with(EXTRA);
    let base = format!("http://{}", edge.http);
    let (code, out, err) = run_with_timeout(
        Command::new("node")
            .arg(dir.join("chat.mjs"))
            .args([&base, AGENT_TOKEN, "sam-token-1"]),
        120,
    );
    assert_eq!(
        code,
        0,
        "browser run failed\nstdout:\n{out}\nstderr:\n{err}\nedge log:\n{}",
        edge.log_text()
    );
    assert!(out.contains("OK"), "{out}");
}
