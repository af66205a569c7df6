//! Tests of the `task` module.

use super::*;

#[test]
fn external_and_persistent_addresses_are_checked() {
    let local = PeerId::random();
    let other = PeerId::random();
    let addr: Multiaddr = "/ip4/203.0.113.7/tcp/26656".parse().unwrap();
    // Our own id may trail an external address; another peer's may not.
    assert_eq!(
        external_addresses(
            &[addr.clone().with(Protocol::P2p(local)), addr.clone()],
            local
        )
        .unwrap(),
        vec![addr.clone()]
    );
    assert!(external_addresses(&[addr.clone().with(Protocol::P2p(other))], local).is_err());
    // Persistent peers need an id; ours is skipped; one peer's addresses are grouped.
    assert!(persistent_peers(std::slice::from_ref(&addr), local).is_err());
    let second: Multiaddr = "/dns4/example.org/tcp/1".parse().unwrap();
    assert_eq!(
        persistent_peers(
            &[
                addr.clone().with(Protocol::P2p(other)),
                addr.clone().with(Protocol::P2p(local)),
                second.clone().with(Protocol::P2p(other)),
            ],
            local
        )
        .unwrap(),
        vec![(other, vec![addr, second])]
    );
}
