//! Cluster claims of agents (sans-IO: the test plays the cluster's answers).

use super::*;

fn clustered() -> Net {
    let mut n = Net::new(&CONFIG.replace("max_wait = \"30s\"", "max_wait = \"300s\""));
    n.b.enable_claims();
    n
}

/// As [`clustered`], with 1001 (Alice) the queue's only agent.
fn clustered_alice() -> Net {
    let mut n = Net::new(
        &CONFIG
            .replace("max_wait = \"30s\"", "max_wait = \"300s\"")
            .replace("agents = [\"1001\", \"1002\"]", "agents = [\"1001\"]"),
    );
    n.b.enable_claims();
    n
}

/// The claims and releases asked of the cluster since the last call.
fn asked(n: &mut Net) -> Vec<(Option<CallId>, String)> {
    let mut out = Vec::new();
    n.outputs.retain(|o| match o {
        Output::ClaimAgent { call, agent } => {
            out.push((Some(*call), agent.clone()));
            false
        }
        Output::ReleaseAgent { agent } => {
            out.push((None, agent.clone()));
            false
        }
        _ => true,
    });
    out
}

fn answer_claim(n: &mut Net, call: CallId, agent: &str, r: ClaimResult) {
    n.b.claim_result(n.now, call, agent, r);
    n.pump();
}

#[test]
fn an_agent_is_offered_only_once_its_claim_is_granted_and_released_when_free() {
    let mut n = clustered_alice();
    n.send(CALLER, &invite("1000", "k1", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    let a = asked(&mut n);
    assert_eq!(a.len(), 1, "{a:?}");
    let (Some(call), agent) = a[0].clone() else {
        panic!("{a:?}")
    };
    assert_eq!(agent, "1001");
    assert!(n.quiet(ALICE) && n.quiet(BOB), "no offer before the claim");
    answer_claim(&mut n, call, "1001", ClaimResult::Granted);
    let (to_alice, _) = n.expect_request(ALICE, Method::Invite);
    assert_eq!(n.b.claims_held(), ["1001"]);
    assert_eq!(n.b.stats.claims, [1, 0, 0], "granted, taken, failed");
    n.send(
        ALICE,
        &answer(&to_alice, 200, "alice", Some(&sdp(7000)), ALICE),
    );
    n.expect_request(ALICE, Method::Ack);
    let (ok, _) = n.expect_response(CALLER, 200);
    assert!(asked(&mut n).is_empty(), "held while talking");
    // The call ends (no wrap-up configured): the agent is free, the claim goes.
    n.send(CALLER, &caller_bye(&ok, "k1"));
    n.expect_response(CALLER, 200);
    let (bye, _) = n.expect_request(ALICE, Method::Bye);
    n.send(ALICE, &answer(&bye, 200, "alice", None, ALICE));
    assert_eq!(asked(&mut n), [(None, "1001".to_string())]);
    assert!(n.b.claims_held().is_empty());
}

#[test]
fn an_agent_another_node_holds_is_skipped_until_released_or_its_lease_lapses() {
    let mut n = clustered();
    let t0 = n.now;
    n.b.claim_elsewhere(n.now, "1001");
    assert!(CLAIM_RECHECK < CLAIM_LEASE);
    n.send(CALLER, &invite("1000", "k2", &sdp(4000)));
    n.expect_response(CALLER, 100);
    let a = asked(&mut n);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].1, "1002", "1001 is held elsewhere");
    let call = a[0].0.unwrap();
    // Another node got 1002 first: both are held elsewhere now, the call waits.
    answer_claim(&mut n, call, "1002", ClaimResult::Taken);
    assert!(asked(&mut n).is_empty());
    assert!(n.quiet(ALICE) && n.quiet(BOB));
    // That node releases 1001: claimed again at once, and offered when granted.
    n.b.claim_released_elsewhere(n.now, "1001");
    n.pump();
    // (Looked at once per burst of other nodes' changes, a few ms later.)
    n.advance(crate::claims::DISPATCH_BATCH);
    assert_eq!(asked(&mut n), [(Some(call), "1001".to_string())]);
    answer_claim(&mut n, call, "1001", ClaimResult::Granted);
    let (to_alice, _) = n.expect_request(ALICE, Method::Invite);
    // Alice refuses. 1002 was refused at t0 and its holder's refresh is seen 4 s
    // later: skipped until a lease after that, then claimed for the call — a
    // node that died stops refreshing its claims.
    n.send(ALICE, &answer(&to_alice, 486, "alice", None, ALICE));
    n.expect_request(ALICE, Method::Ack);
    assert_eq!(asked(&mut n), [(None, "1001".to_string())], "released");
    n.advance(Duration::from_secs(4));
    n.b.claim_elsewhere(n.now, "1002");
    n.advance(t0 + CLAIM_RECHECK - n.now + Duration::from_secs(1));
    assert!(asked(&mut n).is_empty(), "the refresh extended the skip");
    let seen = t0 + Duration::from_secs(4);
    n.advance(seen + CLAIM_LEASE - n.now - Duration::from_millis(10));
    assert!(asked(&mut n).is_empty(), "1002 still held elsewhere");
    n.advance(Duration::from_millis(20));
    assert_eq!(asked(&mut n), [(Some(call), "1002".to_string())]);
}

#[test]
fn a_failed_claim_waits_for_the_queue_retry_and_a_late_grant_is_given_back() {
    let mut n = clustered_alice();
    let text = invite("1000", "k3", &sdp(4000));
    n.send(CALLER, &text);
    let a = asked(&mut n);
    let call = a[0].0.unwrap();
    answer_claim(&mut n, call, "1001", ClaimResult::Failed);
    assert!(
        asked(&mut n).is_empty(),
        "no claim storm while NATS is away"
    );
    n.advance(QUEUE_RETRY);
    let again = asked(&mut n);
    assert_eq!(again.len(), 1, "tried again after the retry: {again:?}");
    // The caller gives up while the claim is in flight; the grant comes late and
    // is given back at once, and the agent was never offered the call.
    n.wire.clear(CALLER);
    n.send(CALLER, &cancel_of(&text));
    n.expect_response(CALLER, 200);
    n.expect_response(CALLER, 487);
    let agent = again[0].1.clone();
    answer_claim(&mut n, call, &agent, ClaimResult::Granted);
    assert_eq!(asked(&mut n), [(None, agent.clone())]);
    assert!(n.b.claims_held().is_empty());
    assert!(n.quiet(ALICE) && n.quiet(BOB));
    // The agent is free here again: a new call claims it.
    n.send(CALLER, &invite("1000", "k4", &sdp(4002)));
    assert_eq!(asked(&mut n).len(), 1);
}

#[test]
fn each_node_offers_its_own_agents_first_then_any() {
    use crate::claims::home_of;
    let mut n = clustered();
    n.b.set_claim_rank(home_of("1001", 2), 2);
    assert_ne!(
        home_of("1001", 2),
        home_of("1002", 2),
        "the two agents hash apart"
    );
    // 1002 idle the longest, but 1001 is this node's: offered first.
    n.b.agent_shared(n.now, "1001", crate::acd::Choice::Ready, unix_ms_ago(60));
    n.b.agent_shared(n.now, "1002", crate::acd::Choice::Ready, unix_ms_ago(3600));
    n.send(CALLER, &invite("1000", "r1", &sdp(4000)));
    assert_eq!(asked(&mut n)[0].1, "1001", "this node's agent first");
    // With 1001 taken, the other node's agent rather than no offer.
    n.send(CALLER, &invite("1000", "r2", &sdp(4002)));
    assert_eq!(asked(&mut n)[0].1, "1002", "then any");
    // Alone in the cluster: the longest idle, as on a single node.
    let mut alone = clustered();
    alone.b.set_claim_rank(0, 1);
    alone.b.agent_shared(
        alone.now,
        "1001",
        crate::acd::Choice::Ready,
        unix_ms_ago(60),
    );
    alone.b.agent_shared(
        alone.now,
        "1002",
        crate::acd::Choice::Ready,
        unix_ms_ago(3600),
    );
    alone.send(CALLER, &invite("1000", "r3", &sdp(4000)));
    assert_eq!(asked(&mut alone)[0].1, "1002");
}

#[test]
fn another_nodes_agents_are_taken_most_recently_idle_first() {
    // Three nodes; this one is home to neither agent. Their own nodes offer
    // their longest idle first: from here, the most recently idle is the one
    // least likely to be claimed there at the same moment.
    use crate::claims::home_of;
    let mut n = clustered();
    let rank = (0..3)
        .find(|r| *r != home_of("1001", 3) && *r != home_of("1002", 3))
        .expect("a rank home to neither");
    n.b.set_claim_rank(rank, 3);
    n.b.agent_shared(n.now, "1001", crate::acd::Choice::Ready, unix_ms_ago(60));
    n.b.agent_shared(n.now, "1002", crate::acd::Choice::Ready, unix_ms_ago(3600));
    n.send(CALLER, &invite("1000", "n1", &sdp(4000)));
    assert_eq!(asked(&mut n)[0].1, "1001", "the most recently idle");
}

#[test]
fn a_single_node_never_asks_for_claims() {
    let mut n = Net::new(CONFIG);
    n.send(CALLER, &invite("1000", "k5", &sdp(4000)));
    n.expect_request(ALICE, Method::Invite);
    assert!(asked(&mut n).is_empty());
}

#[test]
fn a_refused_claim_is_tried_again_after_the_recheck() {
    let mut n = clustered();
    let t0 = n.now;
    n.b.claim_elsewhere(n.now, "1002");
    n.send(CALLER, &invite("1000", "k6", &sdp(4000)));
    let a = asked(&mut n);
    let call = a[0].0.unwrap();
    assert_eq!(a[0].1, "1001");
    // The holder of 1001 died and its claim has not lapsed in the bucket yet.
    answer_claim(&mut n, call, "1001", ClaimResult::Taken);
    n.advance(t0 + CLAIM_RECHECK - n.now - Duration::from_millis(10));
    assert!(asked(&mut n).is_empty());
    n.advance(Duration::from_millis(20));
    assert_eq!(asked(&mut n), [(Some(call), "1001".to_string())]);
    answer_claim(&mut n, call, "1001", ClaimResult::Granted);
    n.expect_request(ALICE, Method::Invite);
}

fn shares(n: &mut Net) -> Vec<(String, AgentShare)> {
    let mut out = Vec::new();
    n.outputs.retain(|o| match o {
        Output::AgentShared { agent, share } => {
            out.push((agent.clone(), share.clone()));
            false
        }
        _ => true,
    });
    out
}

fn shared(n: &mut Net) -> Vec<(String, crate::acd::Choice, u64)> {
    shares(n)
        .into_iter()
        .map(|(a, s)| (a, s.choice, s.idle_since_ms))
        .collect()
}

fn unix_ms_ago(secs: u64) -> u64 {
    (std::time::SystemTime::now() - Duration::from_secs(secs))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn an_agents_choice_and_idle_time_are_shared_with_the_other_nodes() {
    use crate::acd::Choice;
    let mut n = clustered();
    // Chosen here: told to the cluster.
    n.b.set_agent_state(n.now, "1002", Choice::NotReady("lunch".into()))
        .unwrap();
    n.pump();
    let s = shared(&mut n);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        (s[0].0.as_str(), &s[0].1),
        ("1002", &Choice::NotReady("lunch".into()))
    );
    // Chosen on another node: applied here, and not echoed back.
    n.b.agent_shared(
        n.now,
        "1001",
        Choice::NotReady("training".into()),
        unix_ms_ago(0),
    );
    n.pump();
    assert!(shared(&mut n).is_empty(), "no echo");
    let a = n.b.agents(n.now);
    assert_eq!(a[0].state, "not_ready");
    assert_eq!(a[0].reason.as_deref(), Some("training"));
    // Nobody ready: a call waits; 1001 made ready elsewhere gets it.
    n.send(CALLER, &invite("1000", "k7", &sdp(4000)));
    assert!(asked(&mut n).is_empty());
    n.b.agent_shared(n.now, "1001", Choice::Ready, unix_ms_ago(0));
    n.pump();
    assert!(asked(&mut n).is_empty(), "not before the batch");
    n.advance(crate::claims::DISPATCH_BATCH);
    let a = asked(&mut n);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].1, "1001");
    // A single node shares nothing.
    let mut single = Net::new(CONFIG);
    single
        .b
        .set_agent_state(single.now, "1002", Choice::NotReady("lunch".into()))
        .unwrap();
    single.pump();
    assert!(shared(&mut single).is_empty());
}

#[test]
fn the_longest_idle_agent_is_chosen_across_the_cluster() {
    use crate::acd::Choice;
    let mut n = clustered();
    // Here both are idle since start. Another node ended a call of 1001 a minute
    // ago, and 1002 has been idle for an hour: the queue's order is the cluster's.
    n.b.agent_shared(n.now, "1001", Choice::Ready, unix_ms_ago(60));
    n.b.agent_shared(n.now, "1002", Choice::Ready, unix_ms_ago(3600));
    n.pump();
    let idle: Vec<f64> =
        n.b.agents(n.now)
            .iter()
            .map(|a| a.idle_secs.unwrap())
            .collect();
    assert!((59.0..62.0).contains(&idle[0]), "{idle:?}");
    assert!((3599.0..3602.0).contains(&idle[1]), "{idle:?}");
    // The call ends after the agent answered: its new idle time is shared.
    n.send(CALLER, &invite("1000", "k8", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    let a = asked(&mut n);
    assert_eq!(a.len(), 1);
    let (call, agent) = (a[0].0.unwrap(), a[0].1.clone());
    let phone = if agent == "1001" { ALICE } else { BOB };
    answer_claim(&mut n, call, &agent, ClaimResult::Granted);
    let (to_agent, _) = n.expect_request(phone, Method::Invite);
    n.send(
        phone,
        &answer(&to_agent, 200, "ag", Some(&sdp(7000)), phone),
    );
    n.expect_request(phone, Method::Ack);
    let (ok, _) = n.expect_response(CALLER, 200);
    shared(&mut n);
    n.send(CALLER, &caller_bye(&ok, "k8"));
    let (bye, _) = n.expect_request(phone, Method::Bye);
    n.send(phone, &answer(&bye, 200, "ag", None, phone));
    let s = shared(&mut n);
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(s[0].2 >= unix_ms_ago(5), "idle from the call's end: {s:?}");
}

#[test]
fn calls_today_missed_offers_and_a_wrap_up_are_the_clusters() {
    use crate::acd::{Choice, Tally};
    let mut n = Net::new(
        &CONFIG
            .replace("max_wait = \"30s\"", "max_wait = \"300s\"")
            .replace(
                "agents = [\"1001\", \"1002\"]",
                "agents = [\"1001\"]\nmax_no_answer = 3",
            ),
    );
    n.b.enable_claims();
    let today = unix_ms_ago(0) / 86_400_000;
    let agent = |n: &Net| {
        n.b.agents(n.now)
            .into_iter()
            .find(|a| a.id == "1001")
            .unwrap()
    };
    // Another node held Alice: 7 calls today, two offers missed in a row, in a
    // wrap-up there for 30 s more, and it still holds her claim.
    let there = AgentShare {
        choice: Choice::Ready,
        idle_since_ms: unix_ms_ago(0) + 30_000,
        tally: Some(Tally {
            calls_today: 7,
            day: today,
            no_answer: 2,
        }),
        wrap_until_ms: Some(unix_ms_ago(0) + 30_000),
    };
    n.b.agent_shared_with(n.now, "1001", &there);
    n.b.claim_elsewhere(n.now, "1001");
    n.pump();
    let a = agent(&n);
    assert_eq!(
        (a.state, a.calls_today, a.missed_in_a_row),
        ("wrap_up", 7, 2),
        "as the node holding her says"
    );
    assert!(shares(&mut n).is_empty(), "no echo");
    // Released there: ready here, offered here; she lets it ring out. The third
    // offer in a row (two there, one here) puts her not_ready, and every node
    // learns the count.
    n.b.claim_released_elsewhere(n.now, "1001");
    n.pump();
    assert_eq!(agent(&n).state, "ready");
    n.send(CALLER, &invite("1000", "t1", &sdp(4000)));
    let a = asked(&mut n);
    let Some((Some(call), _)) = a.first().cloned() else {
        panic!("{a:?}")
    };
    answer_claim(&mut n, call, "1001", ClaimResult::Granted);
    ring_out(&mut n);
    let a = agent(&n);
    assert_eq!(
        (a.state, a.reason.as_deref(), a.missed_in_a_row),
        ("not_ready", Some("no_answer"), 3)
    );
    let s = shares(&mut n);
    let last = &s.last().expect("shared").1;
    assert_eq!(last.choice, Choice::NotReady("no_answer".into()));
    assert_eq!(last.tally.map(|t| t.no_answer), Some(3));
    // Ready again (cleared count), a call answered here and ended: the 8th call
    // today, shared with the cluster.
    n.b.set_agent_state(n.now, "1001", Choice::Ready).unwrap();
    n.pump();
    n.advance(Duration::from_secs(1));
    let call = asked(&mut n).into_iter().find_map(|(c, _)| c);
    answer_claim(
        &mut n,
        call.expect("the call is offered again"),
        "1001",
        ClaimResult::Granted,
    );
    let (inv, _) = n.expect_request(ALICE, Method::Invite);
    n.send(ALICE, &answer(&inv, 200, "alice", Some(&sdp(7000)), ALICE));
    n.expect_request(ALICE, Method::Ack);
    shares(&mut n);
    alice_hangs_up(&mut n, &inv);
    let s = shares(&mut n);
    let last = &s.last().expect("shared at the call's end").1;
    assert_eq!(
        last.tally,
        Some(Tally {
            calls_today: 8,
            day: today,
            no_answer: 0
        })
    );
    assert_eq!(agent(&n).calls_today, 8);
}

#[test]
fn another_nodes_older_call_goes_first_for_a_while() {
    use crate::claims::{FIFO_DEFER_MAX, FIFO_MARGIN};
    use std::collections::HashMap;
    let mut n = clustered_alice();
    let heads =
        |id: &str, since: Instant| HashMap::from([("sales".to_string(), (id.to_string(), since))]);
    // Another node's call has waited since t0; ours comes 5 s later and Alice
    // is free: this node holds her back, so the other node's call gets her.
    let t0 = n.now;
    n.b.set_remote_heads(n.now, heads("there-1", t0));
    n.advance(Duration::from_secs(5));
    n.send(CALLER, &invite("1000", "f1", &sdp(4000)));
    n.expect_response(CALLER, 100);
    assert!(asked(&mut n).is_empty(), "held back for the older call");
    assert_eq!(n.b.stats.fifo_holdbacks, 1);
    assert_eq!(n.b.queue_heads(n.now).len(), 1);
    assert_eq!(n.b.queue_heads(n.now)[0].0, "sales");
    n.advance(FIFO_DEFER_MAX - Duration::from_millis(10));
    assert!(asked(&mut n).is_empty());
    // That node did not take her (it may not reach her, or its claim failed):
    // after the hold-back this node claims her after all.
    n.advance(Duration::from_millis(20));
    assert_eq!(asked(&mut n).len(), 1, "not held back for ever");
    // No claim answer yet (nothing to assert on Alice's side); the call is
    // seized. A second call: the other node's head is now another, older call:
    // a fresh hold-back.
    let mut m = clustered_alice();
    let t0 = m.now;
    m.b.set_remote_heads(m.now, heads("there-1", t0));
    m.advance(Duration::from_secs(5));
    m.send(CALLER, &invite("1000", "f2", &sdp(4000)));
    assert!(asked(&mut m).is_empty());
    m.advance(FIFO_DEFER_MAX / 2);
    m.b.set_remote_heads(m.now, heads("there-2", t0 + Duration::from_secs(1)));
    m.advance(FIFO_DEFER_MAX / 2 + Duration::from_millis(100));
    assert!(
        asked(&mut m).is_empty(),
        "a new older head: held back again"
    );
    // The other node has no older call any more: claimed at once.
    m.b.set_remote_heads(m.now, HashMap::new());
    m.advance(crate::claims::DISPATCH_BATCH);
    assert_eq!(asked(&mut m).len(), 1);
    // A call of the other node that waited less (or within the margin) does
    // not hold this node's call back.
    let mut y = clustered_alice();
    y.advance(Duration::from_secs(5));
    let close = y.now - FIFO_MARGIN / 2;
    y.b.set_remote_heads(y.now, heads("there-3", close));
    y.send(CALLER, &invite("1000", "f3", &sdp(4000)));
    assert_eq!(asked(&mut y).len(), 1, "within the margin: no hold-back");
}
