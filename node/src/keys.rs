//! Key files: the 32-byte Ed25519 secret seed as hex on one line, readable by the owner only.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use timecoin_types::Keypair;

/// Writes `key` to `path`, refusing to overwrite an existing file.
pub fn write_key(path: &Path, key: &Keypair) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    writeln!(file, "{}", hex::encode(key.seed()))?;
    Ok(())
}

/// Reads a key written by [`write_key`].
pub fn read_key(path: &Path) -> Result<Keypair> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let mut seed = [0u8; 32];
    if hex::decode_to_slice(text.trim(), &mut seed).is_err() {
        bail!("{} does not hold a 64-hex-digit key", path.display());
    }
    Ok(Keypair::from_seed(seed))
}

/// The libp2p identity stored in a key file.
pub fn read_node_identity(path: &Path) -> Result<libp2p::identity::Keypair> {
    let seed = read_key(path)?.seed();
    Ok(libp2p::identity::Keypair::ed25519_from_bytes(seed)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = Keypair::generate();
        write_key(&path, &key).unwrap();
        assert_eq!(read_key(&path).unwrap().public(), key.public());
        assert!(write_key(&path, &Keypair::generate()).is_err());
        std::fs::write(&path, "zz").unwrap();
        assert!(read_key(&path).is_err());
    }
}
