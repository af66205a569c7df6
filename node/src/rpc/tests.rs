//! `getvalidators`' view of the next heights, checked without a node.

use super::*;
use timecoin_types::Keypair;

fn member(seed: u8) -> Validator {
    Validator {
        public_key: Keypair::from_seed([seed; 32]).public(),
        weight: 1000,
        reward_address: Address([seed; 20]),
    }
}

fn record(seed: u8, unlock_height: Option<u64>) -> StakeRecord {
    StakeRecord {
        public_key: member(seed).public_key,
        reward_address: Address([seed; 20]),
        owner: Address([seed + 100; 20]),
        amount: 1000,
        unlock_height,
    }
}

fn outpoint(n: u8) -> OutPoint {
    OutPoint {
        txid: Hash256::digest(&[n]),
        index: 0,
    }
}

#[test]
fn shows_the_next_set_then_pending_entries_and_exits() {
    // 1 is a genesis validator, 2 is leaving, 3 is entering at tip + 2.
    let next = ValidatorSet::new(vec![member(1), member(2)]).unwrap();
    let after = ValidatorSet::new(vec![member(1), member(3)]).unwrap();
    let stakes = [
        (outpoint(2), record(2, Some(30))),
        (outpoint(3), record(3, None)),
    ];
    let list = validators_json(10, &next, &after, &stakes);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    let find = |seed: u8| {
        list.iter()
            .find(|v| v["public_key"] == member(seed).public_key.to_string())
            .unwrap()
    };
    assert_eq!(find(1)["status"], "active");
    assert_eq!(find(1)["stake"], Value::Null);
    assert!(find(1).get("effective_height").is_none());
    assert_eq!(find(2)["status"], "leaving");
    assert_eq!(find(2)["effective_height"], 12);
    assert_eq!(find(2)["unlock_height"], 30);
    assert_eq!(find(2)["stake"], outpoint(2).to_string());
    assert_eq!(find(3)["status"], "entering");
    assert_eq!(find(3)["effective_height"], 12);
    assert_eq!(find(3)["owner"], Address([103; 20]).to_string());
    // The set members come first, so a client can still rebuild the next height's set.
    assert_ne!(list[2]["status"], "active");
}

#[test]
fn a_re_registered_key_shows_its_bonded_stake() {
    let set = ValidatorSet::new(vec![member(2)]).unwrap();
    let stakes = [
        (outpoint(1), record(2, Some(5))),
        (outpoint(2), record(2, None)),
    ];
    let list = validators_json(10, &set, &set, &stakes);
    assert_eq!(list[0]["stake"], outpoint(2).to_string());
    assert!(list[0].get("unlock_height").is_none());
}
