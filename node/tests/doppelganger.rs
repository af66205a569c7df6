//! A validator started beside another process running its key stops before signing anything;
//! the original, restarted alone, watches, finds no one, and signs again.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn a_second_process_with_a_running_validators_key_stops_without_signing() {
    let mut net = Testnet::running(4, 34100, 100, 3);
    let key = net.nodes[1].validator_key().unwrap();

    // An operator copies validator 1's key into a new home and starts it while validator 1
    // still runs.
    let mut twin = init_follower(&net, "twin", &["--validator"]);
    std::fs::copy(
        net.nodes[1].home.join("validator.key"),
        twin.home.join("validator.key"),
    )
    .unwrap();
    assert_eq!(twin.validator_key().as_deref(), Some(key.as_str()));
    twin.start();
    let status = twin.wait_exit(Duration::from_secs(60));
    let log = twin.log_tail(10);
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{log}");
    assert!(
        log.contains("another process signs with this validator's key"),
        "{log}"
    );
    assert!(!log.contains("signing from this height on"), "{log}");

    // Validator 1 restarted alone watches its heights, sees no other signer, and signs again.
    assert!(net.nodes[1].stop());
    let restarted_at = net.top(&[0, 2, 3]);
    net.nodes[1].start();
    let signed_again = wait_until(
        "validator 1 signs again after its watch",
        Duration::from_secs(60),
        || {
            let tip = net.nodes[0].height()?;
            (restarted_at + 1..=tip).find(|&h| certificate_signers(&net.nodes[0], h).contains(&key))
        },
        || net.logs(),
    );
    assert!(net.nodes[1]
        .log_tail(200)
        .contains("signing from this height on"));
    assert!(signed_again > restarted_at);
    net.assert_agree(&[0, 1, 2, 3], signed_again);
}
