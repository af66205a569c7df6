use super::*;
use timecoin_types::{Address, Hash256};

fn output(i: u8) -> Record {
    Record::Output(
        OutPoint {
            txid: Hash256([i; 32]),
            index: u32::from(i),
        },
        TxOutput {
            address: Address([i; 20]),
            amount: u64::from(i) * 1000,
        },
    )
}

fn stake(i: u8) -> Record {
    let record = StakeRecord::from_bytes(&[i; 88]);
    Record::Stake(
        OutPoint {
            txid: Hash256([i; 32]),
            index: 0,
        },
        record,
    )
}

fn encode(records: &[Record]) -> Vec<u8> {
    let mut bytes = Vec::new();
    records.iter().for_each(|r| r.encode_into(&mut bytes));
    bytes
}

#[test]
fn records_round_trip_in_their_fixed_layouts() {
    let records = [output(1), output(2), stake(1), stake(3)];
    let bytes = encode(&records);
    assert_eq!(bytes.len(), 2 * 65 + 2 * 125);
    assert_eq!(bytes[0], 0);
    assert_eq!(&bytes[1..33], &[1; 32]);
    assert_eq!(&bytes[33..37], &1u32.to_be_bytes());
    assert_eq!(bytes[130], 1, "stake records are tagged 1");
    assert_eq!(decode_records(&bytes).unwrap(), records);
    assert_eq!(decode_records(&[]).unwrap(), []);
}

#[test]
fn malformed_chunks_are_refused_with_their_reason() {
    let cases: [(Vec<u8>, &str); 5] = [
        (encode(&[output(1)])[..64].to_vec(), "record 0 is cut short"),
        (
            encode(&[output(1), stake(1)])[..150].to_vec(),
            "record 1 is cut short",
        ),
        ([vec![2], vec![0; 64]].concat(), "record 0 has tag 2"),
        (encode(&[output(2), output(1)]), "record 1 is out of order"),
        (encode(&[stake(1), output(9)]), "record 1 is out of order"),
    ];
    for (bytes, reason) in cases {
        assert_eq!(decode_records(&bytes).unwrap_err(), reason);
    }
    assert!(decode_records(&encode(&[output(3), output(3)]))
        .unwrap_err()
        .contains("out of order"));
}

#[test]
fn a_manifest_must_list_a_hash_for_every_chunk() {
    let bytes = encode(&[output(1), output(2), output(3)]);
    let mut manifest = SnapshotManifest {
        format: SNAPSHOT_FORMAT,
        chain_id: "c".into(),
        height: 4,
        block_hash: Hash256::ZERO,
        state_root: Hash256::ZERO,
        chunk_records: 2,
        records: 3,
        chunks: vec![chunk_hash(&bytes[..130]), chunk_hash(&bytes[130..])],
    };
    manifest.check("c").unwrap();
    assert_eq!((manifest.records_in(0), manifest.records_in(1)), (2, 1));
    assert_eq!(
        decode_chunk(&manifest, 1, &bytes[130..]).unwrap(),
        [output(3)]
    );
    let err = decode_chunk(&manifest, 0, &bytes[..65]).unwrap_err();
    assert!(err.to_string().contains("its hash is not the one"), "{err}");
    assert!(decode_chunk(&manifest, 2, &bytes).is_err());
    assert!(manifest.check("d").is_err());
    manifest.records = 5;
    assert!(manifest
        .check("c")
        .unwrap_err()
        .to_string()
        .contains("2 chunk hashes for 5"));
    manifest.records = 3;
    manifest.chunk_records = 0;
    assert!(manifest.check("c").is_err());
    manifest.chunk_records = 2;
    manifest.height = 0;
    assert!(manifest.check("c").is_err());
}
