//! The `timed` node as a library: everything the binary runs, and the wire formats and
//! clients that tests, fuzz targets and tools reuse instead of copying.
//!
//! `main.rs` is only the command line; each subcommand lives in its module here.

pub mod bench;
pub mod config;
pub mod dashboard;
pub mod keys;
pub mod metrics;
pub mod node;
pub mod proof;
pub mod rpc;
pub mod shared;
pub mod signer_cmd;
pub mod start;
pub mod state_sync;
pub mod sync;
pub mod testnet;
pub mod txs;
pub mod validator;
pub mod wallet;
pub mod wire;

/// The tracing target of the running node's own log lines (startup, event loop, gossip
/// verdicts), wherever their code lives: `timed::node`, as it has always been, so that
/// `RUST_LOG` filters and readers of the logs keep working.
pub const NODE_LOG_TARGET: &str = "timed::node";
