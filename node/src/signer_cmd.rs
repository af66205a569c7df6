//! `timed signer export` and `timed signer import`: moving a validator to another machine
//! without giving its double-sign guard a chance to forget anything.
//!
//! The guard is the consensus signer's last-signed state ([`SignerState`]), persisted in the
//! node's redb store inside a [`ConsensusRecord`]. Copying the key alone to a new machine
//! would start it with an empty guard, free to sign again at heights the old machine already
//! signed: an equivocation. `export` writes the guard of a stopped node to a small JSON file
//! (the *interchange* file, in the spirit of Ethereum's slashing-protection interchange);
//! `import` loads it into the new home's store, refusing anything that belongs to another
//! chain or key, and anything that would move the target's guard backwards.
//!
//! Both open the database the way `timed start` does and fail at once when a running node
//! holds it: the guard of a running node changes with every vote, so it can be neither read
//! nor replaced safely.

use crate::config::{resolve, Config};
use crate::keys;
use crate::wire::{ConsensusRecord, ProposalMessage, MAX_CONSENSUS_RECORD_BYTES};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use timecoin_consensus::{SignerState, STEP_PRECOMMIT, STEP_PREPARE, STEP_PROPOSAL};
use timecoin_ledger::{Genesis, Store};
use timecoin_types::{codec, Hash256, PublicKey, Signature, Vote, VoteKind};

/// The `format` field of every interchange file.
pub const FORMAT: &str = "timecoin-signer-interchange";
/// The `version` of the interchange format this build writes and reads.
pub const VERSION: u32 = 1;
/// Largest interchange file `import` reads (a real one is well under a kilobyte).
const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Name of the database file inside the data directory (as `timed start` opens it).
const DB_FILE: &str = "timed.redb";

/// `timed signer …`
#[derive(Subcommand, Debug)]
pub enum SignerCommand {
    /// Write the validator's last-signed state to a JSON interchange file. The node must be
    /// stopped.
    Export {
        /// The validator's home directory.
        #[arg(long)]
        home: PathBuf,
        /// The interchange file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load an interchange file into this home's store. The node must be stopped. Refuses a
    /// file of another chain or another validator key, and one older than what this home has
    /// already signed.
    Import {
        /// The validator's home directory (the target).
        #[arg(long)]
        home: PathBuf,
        /// The interchange file written by `timed signer export`.
        file: PathBuf,
    },
}

/// Runs a `timed signer` subcommand.
pub fn run(cmd: SignerCommand) -> Result<()> {
    match cmd {
        SignerCommand::Export { home, out } => {
            let (file, _) = export(&home, &out)?;
            println!(
                "exported the signer state of {} to {}: {}",
                file.validator_public_key,
                out.display(),
                describe(&file.last_signed.to_state()?)
            );
            Ok(())
        }
        SignerCommand::Import { home, file } => {
            let outcome = import(&home, &file)?;
            println!("{outcome}");
            Ok(())
        }
    }
}

/// The interchange file: which chain and key it is for, and what that key signed last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interchange {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// The chain id of the genesis.
    pub chain_id: String,
    /// [`Genesis::hash`] of the genesis.
    pub genesis_hash: Hash256,
    /// The validator's consensus public key.
    pub validator_public_key: PublicKey,
    /// The guard.
    pub last_signed: LastSigned,
}

/// What was signed last, as the file spells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastSigned {
    /// Height of the last signed message (0 when nothing was signed).
    pub height: u64,
    /// Its round.
    pub round: u32,
    /// Its step.
    pub step: Step,
    /// Its block (`null` for a nil vote or when nothing was signed).
    pub block_hash: Option<Hash256>,
    /// Its signature, hex.
    pub signature: Option<Signature>,
    /// The lock held at `height`.
    pub locked: Option<RoundBlock>,
    /// The valid value seen at `height`.
    pub valid: Option<RoundBlock>,
}

/// The step of a signed message; ordered as the guard orders them within a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Nothing signed yet.
    None,
    /// A proposal.
    Proposal,
    /// A prepare vote.
    Prepare,
    /// A precommit vote.
    Precommit,
}

impl Step {
    fn of(step: u8) -> Result<Step> {
        Ok(match step {
            0 => Step::None,
            STEP_PROPOSAL => Step::Proposal,
            STEP_PREPARE => Step::Prepare,
            STEP_PRECOMMIT => Step::Precommit,
            other => bail!("unknown signer step {other}"),
        })
    }

    fn number(self) -> u8 {
        match self {
            Step::None => 0,
            Step::Proposal => STEP_PROPOSAL,
            Step::Prepare => STEP_PREPARE,
            Step::Precommit => STEP_PRECOMMIT,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Step::None => "none",
            Step::Proposal => "proposal",
            Step::Prepare => "prepare",
            Step::Precommit => "precommit",
        }
    }
}

/// A `(round, block)` pair: a lock or a valid value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundBlock {
    /// The round.
    pub round: u32,
    /// The block.
    pub block_hash: Hash256,
}

impl RoundBlock {
    fn of(pair: Option<(u32, Hash256)>) -> Option<RoundBlock> {
        pair.map(|(round, block_hash)| RoundBlock { round, block_hash })
    }

    fn pair(this: Option<RoundBlock>) -> Option<(u32, Hash256)> {
        this.map(|rb| (rb.round, rb.block_hash))
    }
}

impl LastSigned {
    /// The file's spelling of `state`.
    pub fn of(state: &SignerState) -> Result<LastSigned> {
        Ok(LastSigned {
            height: state.height,
            round: state.round,
            step: Step::of(state.step)?,
            block_hash: state.block_hash,
            signature: state.signature,
            locked: RoundBlock::of(state.locked),
            valid: RoundBlock::of(state.valid),
        })
    }

    /// The signer state the file describes, if it is coherent: "nothing signed" has nothing
    /// else, a proposal names a block.
    pub fn to_state(&self) -> Result<SignerState> {
        let nothing_else = self.height == 0
            && self.round == 0
            && self.block_hash.is_none()
            && self.signature.is_none()
            && self.locked.is_none()
            && self.valid.is_none();
        match self.step {
            Step::None if !nothing_else => {
                bail!("step \"none\" (nothing signed) must come with height 0 and nothing else")
            }
            Step::Proposal if self.block_hash.is_none() => {
                bail!("a signed proposal must name its block_hash")
            }
            _ => {}
        }
        Ok(SignerState {
            height: self.height,
            round: self.round,
            step: self.step.number(),
            block_hash: self.block_hash,
            signature: self.signature,
            locked: RoundBlock::pair(self.locked),
            valid: RoundBlock::pair(self.valid),
        })
    }
}

/// The guard's position: `(height, round, step)`, `None` when nothing was signed.
pub fn slot(state: &SignerState) -> Option<(u64, u32, u8)> {
    (state.step != 0).then_some((state.height, state.round, state.step))
}

/// What `import` does with the target's guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The file is later (or the target empty): its state replaces the target's.
    Replace,
    /// The target already holds exactly this slot and message: nothing to write.
    Unchanged,
}

/// Why `import` refuses to touch the target's guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The target signed something later than the file's last message.
    #[error(
        "the target has already signed {} and the file's last message is {}: importing would \
         move the double-sign guard backwards, so the target's is kept",
        show_slot(*target),
        show_slot(*file)
    )]
    Backwards {
        /// The target's slot.
        target: Option<(u64, u32, u8)>,
        /// The file's slot.
        file: Option<(u64, u32, u8)>,
    },
    /// Both signed the same slot, but not the same message: the key has equivocated already.
    #[error(
        "the target and the file both signed {} but not the same message: this key was \
         used on two machines; the target's guard is kept",
        show_slot(Some(*slot))
    )]
    Conflict {
        /// The slot both signed.
        slot: (u64, u32, u8),
    },
}

fn show_slot(slot: Option<(u64, u32, u8)>) -> String {
    match slot {
        None => "nothing".into(),
        Some((h, r, s)) => {
            let step = Step::of(s).map_or("?", Step::name);
            format!("(height {h}, round {r}, {step})")
        }
    }
}

/// Compares the target's guard with the file's: the file may replace it only if it is not
/// older, and at an equal slot only if it is the same message (then nothing changes).
pub fn decide(target: Option<&SignerState>, file: &SignerState) -> Result<Verdict, Refusal> {
    let target_slot = target.and_then(slot);
    let file_slot = slot(file);
    let Some(t) = target_slot else {
        return Ok(if file_slot.is_none() {
            Verdict::Unchanged
        } else {
            Verdict::Replace
        });
    };
    match file_slot {
        Some(f) if f > t => Ok(Verdict::Replace),
        Some(f) if f == t => {
            let target = target.expect("a slot comes from a state");
            let same_signature = match (target.signature, file.signature) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if target.block_hash == file.block_hash && same_signature {
                Ok(Verdict::Unchanged)
            } else {
                Err(Refusal::Conflict { slot: t })
            }
        }
        _ => Err(Refusal::Backwards {
            target: target_slot,
            file: file_slot,
        }),
    }
}

/// The target's persisted proposals that stay with an imported guard at `height`: those of
/// that height (the locked or valid block the guard may name); older ones are of no use.
pub fn retained_proposals(proposals: Vec<ProposalMessage>, height: u64) -> Vec<ProposalMessage> {
    proposals
        .into_iter()
        .filter(|p| p.proposal.height == height)
        .collect()
}

/// One line saying where a guard stands.
pub fn describe(state: &SignerState) -> String {
    let Some((height, round, step)) = slot(state) else {
        return "nothing signed yet".into();
    };
    let step = Step::of(step).map_or("?", Step::name);
    let block = state
        .block_hash
        .map_or_else(|| "nil".to_string(), |h| short(&h));
    let mut line = format!("last signed height {height}, round {round}, {step} for {block}");
    if let Some((r, h)) = state.locked {
        line.push_str(&format!(", locked at round {r} on {}", short(&h)));
    }
    if let Some((r, h)) = state.valid {
        line.push_str(&format!(", valid value at round {r} {}", short(&h)));
    }
    line
}

fn short(hash: &Hash256) -> String {
    let text = hash.to_string();
    format!("{}…", &text[..12])
}

/// A validator home as `export` and `import` need it.
struct Home {
    genesis: Genesis,
    public_key: PublicKey,
    db_path: PathBuf,
}

impl Home {
    fn open(home: &Path) -> Result<Home> {
        let config = Config::load(home)?;
        let genesis = Genesis::load(&resolve(home, &config.genesis))?;
        let Some(key_path) = &config.validator_key else {
            bail!(
                "{} is not a validator home (its config has no validator_key)",
                home.display()
            );
        };
        let public_key = keys::read_key(&resolve(home, key_path))?.public();
        let db_path = resolve(home, &config.data_dir).join(DB_FILE);
        Ok(Home {
            genesis,
            public_key,
            db_path,
        })
    }

    /// Opens the store, failing at once if a running node holds it, and checks that it
    /// belongs to the home's genesis.
    fn store(&self) -> Result<Store> {
        let store = Store::open(&self.db_path).map_err(|e| {
            if e.is_in_use() {
                anyhow::anyhow!(
                    "the database {} is in use by a running node: stop the node first",
                    self.db_path.display()
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot open {}", self.db_path.display()))
            }
        })?;
        let expected = self.genesis.hash();
        if let Some(stored) = store.genesis_hash()? {
            if stored != expected {
                bail!(
                    "the database {} belongs to genesis {stored}, not to the home's genesis {expected}",
                    self.db_path.display()
                );
            }
        }
        Ok(store)
    }
}

fn load_record(store: &Store) -> Result<Option<ConsensusRecord>> {
    match store.load_signer_state()? {
        Some(bytes) => Ok(Some(
            codec::decode::<ConsensusRecord>(&bytes, MAX_CONSENSUS_RECORD_BYTES)
                .context("stored signer state is unreadable")?,
        )),
        None => Ok(None),
    }
}

/// `timed signer export`: writes the interchange file of `home` to `out` (through a
/// temporary file and a rename, so `out` is never half written), and returns it with the
/// store's full signer state.
pub fn export(home: &Path, out: &Path) -> Result<(Interchange, SignerState)> {
    let home_data = Home::open(home)?;
    if !home_data.db_path.exists() {
        bail!(
            "{} has no database at {} (the node never ran): nothing to export",
            home.display(),
            home_data.db_path.display()
        );
    }
    let store = home_data.store()?;
    let state = load_record(&store)?.map_or_else(SignerState::default, |r| r.signer);
    drop(store);
    let file = Interchange {
        format: FORMAT.into(),
        version: VERSION,
        chain_id: home_data.genesis.chain_id.clone(),
        genesis_hash: home_data.genesis.hash(),
        validator_public_key: home_data.public_key,
        last_signed: LastSigned::of(&state)?,
    };
    let mut text = serde_json::to_string_pretty(&file)?;
    text.push('\n');
    write_atomically(out, text.as_bytes())?;
    Ok((file, state))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads and checks an interchange file on its own: format, version, a coherent state, and a
/// vote signature (when there is one) by the file's key over the file's vote.
pub fn read_file(path: &Path) -> Result<(Interchange, SignerState)> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        bail!(
            "{} is {} bytes, too large for an interchange file",
            path.display(),
            meta.len()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: Interchange = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a signer interchange file", path.display()))?;
    if file.format != FORMAT {
        bail!(
            "{} has format {:?}, expected {FORMAT:?}",
            path.display(),
            file.format
        );
    }
    if file.version != VERSION {
        bail!(
            "{} is interchange version {}; this timed reads version {VERSION}",
            path.display(),
            file.version
        );
    }
    let state = file
        .last_signed
        .to_state()
        .with_context(|| format!("{} has an incoherent last_signed", path.display()))?;
    let kind = match file.last_signed.step {
        Step::Prepare => Some(VoteKind::Prepare),
        Step::Precommit => Some(VoteKind::Precommit),
        Step::None | Step::Proposal => None,
    };
    if let (Some(kind), Some(sig)) = (kind, state.signature) {
        let digest = Vote::sign_digest(
            &file.chain_id,
            kind,
            state.height,
            state.round,
            state.block_hash,
        );
        if file.validator_public_key.verify(&digest, &sig).is_err() {
            bail!(
                "{}: the signature of the last vote does not verify under the file's key",
                path.display()
            );
        }
    }
    Ok((file, state))
}

/// What `import` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The validator.
    pub public_key: PublicKey,
    /// Replaced or already there.
    pub verdict: Verdict,
    /// The guard now in the store.
    pub state: SignerState,
    /// How many of the target's persisted proposals were kept.
    pub kept_proposals: usize,
}

impl std::fmt::Display for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.verdict {
            Verdict::Replace => "imported",
            Verdict::Unchanged => "already up to date",
        };
        write!(
            f,
            "{what}: the signer guard of {} is now at {} ({} stored proposal(s) kept)",
            self.public_key,
            describe(&self.state),
            self.kept_proposals
        )
    }
}

/// `timed signer import`: loads the interchange file `path` into `home`'s store, or refuses
/// with the reason (another chain or key, a running node, a guard that would move back).
pub fn import(home: &Path, path: &Path) -> Result<Imported> {
    let (file, incoming) = read_file(path)?;
    let target = Home::open(home)?;
    if file.chain_id != target.genesis.chain_id {
        bail!(
            "refusing to import: the file is for chain {:?}, {} runs chain {:?}",
            file.chain_id,
            home.display(),
            target.genesis.chain_id
        );
    }
    if file.genesis_hash != target.genesis.hash() {
        bail!(
            "refusing to import: the file is for genesis {}, {} has genesis {}",
            file.genesis_hash,
            home.display(),
            target.genesis.hash()
        );
    }
    if file.validator_public_key != target.public_key {
        bail!(
            "refusing to import: the file is for validator key {}, but {} holds validator key {}",
            file.validator_public_key,
            home.display(),
            target.public_key
        );
    }
    if let Some(dir) = target.db_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let store = target.store()?;
    let (current, proposals) = match load_record(&store)? {
        Some(record) => (Some(record.signer), record.proposals),
        None => (None, Vec::new()),
    };
    let verdict = decide(current.as_ref(), &incoming)
        .map_err(|refusal| anyhow::anyhow!("refusing to import: {refusal}"))?;
    let (state, kept_proposals) = match verdict {
        Verdict::Unchanged => (current.unwrap_or_default(), proposals.len()),
        Verdict::Replace => {
            let proposals = retained_proposals(proposals, incoming.height);
            let kept = proposals.len();
            let record = ConsensusRecord {
                signer: incoming.clone(),
                proposals,
            };
            store.save_signer_state(&codec::encode(&record))?;
            (incoming, kept)
        }
    };
    Ok(Imported {
        public_key: target.public_key,
        verdict,
        state,
        kept_proposals,
    })
}

#[cfg(test)]
mod tests;
