//! Snapshot files: a store writes the state of every [`SnapshotConfig::interval`]-th height
//! into `<dir>/<height>/` (chunk files and the manifest), a directory assembled under a
//! temporary name and then renamed, so that a crash never leaves a half-written snapshot that
//! looks whole. The format itself is `timecoin-chain`'s, re-exported here.

use std::path::{Path, PathBuf};
pub use timecoin_chain::snapshot::*;
use timecoin_types::{codec, Hash256};

/// Snapshots kept on disk: the newest and the one before, so that a joiner midway through
/// fetching the older one can finish it.
pub const SNAPSHOTS_KEPT: usize = 2;

const MANIFEST_FILE: &str = "manifest.cbor";

/// When and where a store writes snapshots.
#[derive(Clone, Debug)]
pub struct SnapshotConfig {
    /// The directory holding one sub-directory per snapshot height.
    pub dir: PathBuf,
    /// A snapshot at every height divisible by this.
    pub interval: u64,
    /// Records per chunk.
    pub chunk_records: u32,
}

/// The snapshots written in a directory.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// The snapshots under `dir`.
    pub fn new(dir: &Path) -> SnapshotDir {
        SnapshotDir {
            dir: dir.to_path_buf(),
        }
    }

    /// The heights of the complete snapshots, ascending.
    pub fn heights(&self) -> Result<Vec<u64>, SnapshotError> {
        let mut heights = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(heights),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let name = entry?.file_name();
            if let Some(height) = name.to_str().and_then(|n| n.parse::<u64>().ok()) {
                heights.push(height);
            }
        }
        heights.sort_unstable();
        Ok(heights)
    }

    /// The manifest of the snapshot at `height`.
    pub fn manifest(&self, height: u64) -> Result<SnapshotManifest, SnapshotError> {
        let bytes = std::fs::read(self.dir.join(height.to_string()).join(MANIFEST_FILE))?;
        codec::decode(&bytes, MAX_MANIFEST_BYTES)
            .map_err(|e| SnapshotError::Manifest(format!("stored manifest of {height}: {e}")))
    }

    /// The bytes of chunk `index` of the snapshot at `height`.
    pub fn chunk(&self, height: u64, index: u32) -> Result<Vec<u8>, SnapshotError> {
        Ok(std::fs::read(
            self.dir.join(height.to_string()).join(chunk_file(index)),
        )?)
    }

    /// Starts writing the snapshot of `height` under a temporary name.
    pub(crate) fn begin(&self, height: u64) -> Result<PartialSnapshot, SnapshotError> {
        let partial = self.dir.join(format!("{height}.partial"));
        if partial.exists() {
            std::fs::remove_dir_all(&partial)?;
        }
        std::fs::create_dir_all(&partial)?;
        Ok(PartialSnapshot {
            dir: self.clone(),
            height,
            partial,
            chunks: Vec::new(),
        })
    }
}

/// A snapshot being written, chunk by chunk, so that memory holds one chunk at a time.
pub(crate) struct PartialSnapshot {
    dir: SnapshotDir,
    height: u64,
    partial: PathBuf,
    chunks: Vec<Hash256>,
}

impl PartialSnapshot {
    /// Writes the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        let index = self.chunks.len() as u32;
        std::fs::write(self.partial.join(chunk_file(index)), chunk)?;
        self.chunks.push(chunk_hash(chunk));
        Ok(())
    }

    /// Writes the manifest `complete` makes of the chunk hashes, gives the snapshot its
    /// name, and keeps only the newest [`SNAPSHOTS_KEPT`] snapshots.
    pub fn finish(
        self,
        complete: impl FnOnce(Vec<Hash256>) -> SnapshotManifest,
    ) -> Result<SnapshotManifest, SnapshotError> {
        let manifest = complete(self.chunks);
        std::fs::write(self.partial.join(MANIFEST_FILE), codec::encode(&manifest))?;
        let done = self.dir.dir.join(self.height.to_string());
        if done.exists() {
            std::fs::remove_dir_all(&done)?;
        }
        std::fs::rename(&self.partial, &done)?;
        let heights = self.dir.heights()?;
        for old in &heights[..heights.len().saturating_sub(SNAPSHOTS_KEPT)] {
            std::fs::remove_dir_all(self.dir.dir.join(old.to_string()))?;
        }
        Ok(manifest)
    }
}

/// The file name of chunk `index`.
pub fn chunk_file(index: u32) -> String {
    format!("chunk-{index:05}.bin")
}
