//! Moving a validator between machines with `timed signer export` / `import`, on real homes
//! and real processes: a 4-validator testnet runs, validator 1 is stopped and its guard
//! exported; the file is refused by another validator's home, accepted by a fresh home that
//! holds validator 1's key, which then runs in its place and signs on; the older file is then
//! refused over the newer guard, and a home whose node is running refuses at once.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn export(home: &Path, out: &Path) -> Value {
    timed(&[
        "signer",
        "export",
        "--home",
        home.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    read_json(out)
}

fn import_args<'a>(home: &'a Path, file: &'a Path) -> [&'a str; 5] {
    [
        "signer",
        "import",
        "--home",
        home.to_str().unwrap(),
        file.to_str().unwrap(),
    ]
}

fn slot(file: &Value) -> (u64, u64, String) {
    let s = &file["last_signed"];
    (
        s["height"].as_u64().unwrap(),
        s["round"].as_u64().unwrap(),
        s["step"].as_str().unwrap().to_string(),
    )
}

/// Runs `timed args`, expecting a failure within `limit`; returns stderr.
fn fails_within(args: &[&str], limit: Duration) -> String {
    let started = Instant::now();
    let out = Command::new(TIMED).args(args).output().unwrap();
    let took = started.elapsed();
    assert!(
        !out.status.success(),
        "timed {args:?} unexpectedly succeeded"
    );
    assert!(took < limit, "timed {args:?} took {took:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_validator_moves_to_a_new_home_and_its_guard_never_moves_back() {
    let mut net = Testnet::running(4, 33700, 200, 3);
    let dir = net.path();
    let v1_home = net.nodes[1].home.clone();
    let v1_key = net.nodes[1].validator_key().unwrap();
    let v2_home = net.nodes[2].home.clone();

    // Stop validator 1 and export its guard.
    assert!(net.nodes[1].stop(), "node1 did not stop cleanly");
    let old_path = dir.join("v1-old.json");
    let old = export(&v1_home, &old_path);
    assert_eq!(old["format"], "timecoin-signer-interchange");
    assert_eq!(old["version"], 1);
    assert_eq!(old["chain_id"], "timecoin-test");
    assert_eq!(old["genesis_hash"].as_str().unwrap().len(), 64);
    assert_eq!(old["validator_public_key"], v1_key.as_str());
    let old_slot = slot(&old);
    assert!(old_slot.0 >= 3, "validator 1 signed up to {old_slot:?}");
    assert_ne!(old_slot.2, "none");
    assert_eq!(
        old["last_signed"]["signature"].as_str().unwrap().len(),
        128,
        "{old}"
    );

    // Another validator's home refuses it (node2 keeps running; the key check comes first).
    let err = timed_fails(&import_args(&v2_home, &old_path));
    assert!(err.contains("validator key"), "{err}");
    assert!(err.contains(&v1_key), "{err}");

    // A fresh home made with `timed init`, given validator 1's key, accepts it.
    let mut moved = init_follower(&net, "moved", &["--validator"]);
    std::fs::remove_file(moved.home.join("validator.key")).unwrap();
    std::fs::copy(
        v1_home.join("validator.key"),
        moved.home.join("validator.key"),
    )
    .unwrap();
    assert_eq!(moved.validator_key().unwrap(), v1_key);
    let summary = timed(&import_args(&moved.home, &old_path));
    assert!(summary.starts_with("imported:"), "{summary}");
    assert!(
        summary.contains(&format!(
            "last signed height {}, round {}, {}",
            old_slot.0, old_slot.1, old_slot.2
        )),
        "{summary}"
    );
    assert_eq!(summary.trim().lines().count(), 1, "{summary}");
    // Importing the same file again changes nothing.
    let again = timed(&import_args(&moved.home, &old_path));
    assert!(again.starts_with("already up to date:"), "{again}");
    // The guard in the new home is exactly the exported one.
    let check = export(&moved.home, &dir.join("moved-check.json"));
    assert_eq!(check, old);

    // The new home runs as validator 1 (the old one stays stopped) and signs on.
    moved.start();
    let target = old_slot.0 + 10;
    wait_until(
        "the moved validator syncs and follows",
        Duration::from_secs(60),
        || (moved.height()? >= target).then_some(()),
        || format!("{}\n---- moved ----\n{}", net.logs(), moved.log_tail(40)),
    );

    // While it runs, its home's database is locked: import and export fail at once.
    let err = fails_within(
        &import_args(&moved.home, &old_path),
        Duration::from_secs(10),
    );
    assert!(err.contains("stop the node first"), "{err}");
    let err = fails_within(
        &[
            "signer",
            "export",
            "--home",
            moved.home.to_str().unwrap(),
            "--out",
            dir.join("never.json").to_str().unwrap(),
        ],
        Duration::from_secs(10),
    );
    assert!(err.contains("stop the node first"), "{err}");
    assert!(!dir.join("never.json").exists());
    assert!(moved.is_running(), "the node was disturbed");

    assert!(moved.stop(), "moved node did not stop cleanly");
    let new_path = dir.join("moved-new.json");
    let new = export(&moved.home, &new_path);
    let new_slot = slot(&new);
    assert!(
        new_slot.0 > old_slot.0,
        "the moved validator signed nothing new: {new_slot:?} after {old_slot:?}\n{}",
        moved.log_tail(40)
    );

    // The older file over the newer guard: refused, and the guard is kept.
    let err = timed_fails(&import_args(&moved.home, &old_path));
    assert!(err.contains("backwards"), "{err}");
    assert_eq!(export(&moved.home, &dir.join("moved-kept.json")), new);

    // The newer file moves the old home's guard forward (should it ever be started again).
    let summary = timed(&import_args(&v1_home, &new_path));
    assert!(summary.starts_with("imported:"), "{summary}");
    assert_eq!(export(&v1_home, &dir.join("v1-now.json")), new);

    // The chain went on with validator 1 on its new machine.
    let all = [0, 2, 3];
    let tip = net.top(&all);
    net.wait_height(&all, tip + 2, Duration::from_secs(30));
    net.assert_agree(&all, tip + 2);
}
