//! `timed`: the TIME Coin validator node, its testnet generator and a small wallet.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use timed::{bench, config, proof, signer_cmd, start, testnet, validator, wallet};

#[derive(Parser)]
#[command(name = "timed", version, about = "TIME Coin validator node", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a local testnet: genesis, one home per validator, a funded faucet key and a
    /// docker-compose file.
    Testnet(testnet::TestnetArgs),
    /// Prepare a home that joins an existing network (genesis file + bootstrap address).
    Init(config::InitArgs),
    /// Run a node from its home directory.
    Start(start::StartArgs),
    /// Create keys, inspect balances and send TIME.
    #[command(subcommand)]
    Wallet(wallet::WalletCommand),
    /// Join or leave the validator set: lock or unbond collateral on-chain.
    #[command(subcommand)]
    Validator(validator::ValidatorCommand),
    /// Move a validator between machines: export its double-sign guard from a stopped node,
    /// import it into the new home (refusing another chain, another key, or an older state).
    #[command(subcommand)]
    Signer(signer_cmd::SignerCommand),
    /// Ask a node over JSON-RPC whether it is up; prints its chain info, exits non-zero if not
    /// (the container healthcheck).
    Status {
        /// The node's JSON-RPC URL.
        #[arg(long, default_value = "http://127.0.0.1:8545/")]
        rpc: String,
    },
    /// Measure finalization latency, throughput, bandwidth and memory of N local validators
    /// with back-to-back blocks (starts and stops the nodes itself).
    Bench(bench::BenchArgs),
    /// Export finality proofs for offline checking.
    #[command(subcommand)]
    Proof(proof::ProofCommand),
    /// Check a proof bundle offline against the genesis: exit 0 with a one-line summary, or
    /// non-zero naming the first thing that fails.
    Verify(proof::VerifyArgs),
    /// Print the peer id and validator public key of a home (for wiring bootstrap addresses).
    Show {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Testnet(args) => testnet::run(args),
        Command::Init(args) => config::init(args),
        Command::Start(args) => start::run(args),
        Command::Wallet(cmd) => wallet::run(cmd),
        Command::Validator(cmd) => validator::run(cmd),
        Command::Signer(cmd) => signer_cmd::run(cmd),
        Command::Status { rpc } => wallet::status(&rpc),
        Command::Show { home } => config::show(&home),
        Command::Bench(args) => bench::run(args),
        Command::Proof(cmd) => proof::run(cmd),
        Command::Verify(args) => proof::run_verify(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
