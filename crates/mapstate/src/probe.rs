//! Probes of what the filesystem under a state offers, for tools that report
//! it (`mapstate info`, `mapstate check-fs`) and programs that want to know.

use std::path::Path;

use crate::error::{Error, Result};
use crate::map::{MapOptions, MapSync};

/// What the kernel answers to `MAP_SHARED_VALIDATE | MAP_SYNC` on a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapSyncSupport {
    /// Accepted: a DAX filesystem on persistent memory, where stores through
    /// a shared mapping are durable once flushed from the CPU cache.
    Supported,
    /// Refused with this errno: `EOPNOTSUPP` on every filesystem that is not
    /// DAX (ext4, xfs and btrfs on ordinary disks, tmpfs), or `EINVAL` on
    /// kernels without `MAP_SYNC`.
    Unsupported {
        /// The errno of the refusal.
        errno: i32,
    },
}

impl MapSyncSupport {
    /// Whether `MAP_SYNC` is available.
    pub fn is_supported(self) -> bool {
        self == Self::Supported
    }

    /// The symbolic name of the refusal's errno (`EOPNOTSUPP`), if refused.
    pub fn errno_name(self) -> Option<String> {
        match self {
            Self::Unsupported { errno } => Some(crate::error::errno_name_of(errno)),
            Self::Supported => None,
        }
    }
}

/// Asks the kernel whether the file at `path` can be mapped with
/// `MAP_SHARED_VALIDATE | MAP_SYNC`, by mapping its first page read-only for
/// a moment (the file is neither written nor grown). mapstate does not need
/// `MAP_SYNC` (it syncs its log instead); this reports what the filesystem
/// offers.
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("f");
/// std::fs::write(&path, [0u8; 4096]).unwrap();
/// let answer = mapstate::probe_map_sync(&path)?; // Unsupported on ext4 and tmpfs
/// println!("MAP_SYNC: {}", if answer.is_supported() { "yes" } else { "no" });
/// # Ok(()) }
/// ```
pub fn probe_map_sync(path: impl AsRef<Path>) -> Result<MapSyncSupport> {
    let probe = MapOptions::new()
        .read_only()
        .len(0)
        .max_size(4096)
        .map_sync(MapSync::Require)
        .open(path.as_ref());
    match probe {
        Ok(_) => Ok(MapSyncSupport::Supported),
        Err(Error::Unsupported {
            what: "MAP_SYNC",
            source,
            ..
        }) => Ok(MapSyncSupport::Unsupported {
            errno: source.raw_os_error().unwrap_or(0),
        }),
        Err(e) => Err(e),
    }
}
