//! [`Filesystem`]: what the filesystem under a file is, by its `statfs`
//! magic number, and what mapstate can promise there. `mapstate check-fs`
//! and `mapstate info` report it; the library uses the same table.

use std::os::fd::BorrowedFd;
use std::path::Path;

use crate::error::{Error, Result};
use crate::sys;

/// What mapstate's guarantees are worth on a filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsClass {
    /// A local disk filesystem: every guarantee holds.
    Disk,
    /// In memory (tmpfs): states survive process crashes, but nothing
    /// survives a reboot or a power cut.
    Memory,
    /// Usable with care (overlayfs).
    Limited,
    /// mapstate's guarantees cannot hold there (NFS, FUSE, ramfs).
    Unsuitable,
    /// Not a filesystem mapstate knows.
    Unknown,
}

/// A filesystem as `statfs` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filesystem {
    /// The `statfs` magic number (`f_type`).
    pub magic: i64,
    /// Its usual name (`ext4`, `tmpfs`, ...; `unknown` if not in the table).
    pub name: &'static str,
    /// What mapstate can promise there.
    pub class: FsClass,
    /// Why, in a sentence.
    pub note: &'static str,
}

/// The table: magic, name, class, note.
const TABLE: &[(i64, &str, FsClass, &str)] = &[
    (
        0xEF53,
        "ext2/ext3/ext4",
        FsClass::Disk,
        "a local disk filesystem (ext2/3/4 share this magic; ext2/3, and ext4 without \
         extents, refuse fallocate)",
    ),
    (0x5846_5342, "xfs", FsClass::Disk, "a local disk filesystem"),
    (
        0x9123_683E,
        "btrfs",
        FsClass::Disk,
        "a local disk filesystem (copy-on-write)",
    ),
    (
        0xF2F5_2010,
        "f2fs",
        FsClass::Disk,
        "a local flash filesystem",
    ),
    (0x2FC1_2FC1, "zfs", FsClass::Disk, "a local disk filesystem"),
    (
        0x0102_1994,
        "tmpfs",
        FsClass::Memory,
        "in memory: states survive process crashes but nothing survives a reboot or a power cut",
    ),
    (
        0x6969,
        "nfs",
        FsClass::Unsuitable,
        "clients on other machines see stores through mappings late or never, and locks over \
         NFS are emulated; use a local filesystem",
    ),
    (
        0x6573_5546,
        "fuse",
        FsClass::Unsuitable,
        "shared writable mappings and fsync are whatever the FUSE server makes of them (many \
         refuse or ignore them); use a local filesystem",
    ),
    (
        0x8584_58f6,
        "ramfs",
        FsClass::Unsuitable,
        "no fallocate and no size limit (a full memory is an OOM kill); use tmpfs",
    ),
    (
        0xFF53_4D42,
        "cifs",
        FsClass::Unsuitable,
        "another host serves the file: byte-range locks and shared mappings are emulated, and \
         other clients see stores late or never; use a local filesystem",
    ),
    (
        0xFE53_4D42,
        "smb2",
        FsClass::Unsuitable,
        "another host serves the file: byte-range locks and shared mappings are emulated, and \
         other clients see stores late or never; use a local filesystem",
    ),
    (
        0x0102_1997,
        "9p",
        FsClass::Unsuitable,
        "a host or hypervisor serves the file: locks and shared mappings are whatever the \
         server makes of them; use a local filesystem",
    ),
    (
        0x794C_7630,
        "overlayfs",
        FsClass::Limited,
        "works for files created in the upper layer; a state shipped in a lower (image) layer \
         is copied up on first write, and mappings made before that see the old copy: put \
         states on a volume (a bind mount) instead",
    ),
];

impl Filesystem {
    /// The filesystem with `statfs` magic `magic`.
    pub fn from_magic(magic: i64) -> Self {
        let (name, class, note) = TABLE.iter().find(|e| e.0 == magic).map_or(
            (
                "unknown",
                FsClass::Unknown,
                "not a filesystem mapstate knows",
            ),
            |e| (e.1, e.2, e.3),
        );
        Self {
            magic,
            name,
            class,
            note,
        }
    }

    /// The filesystem holding `path` (`statfs`).
    pub fn of(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        Self::of_fd(sys::fd_of(&f)).map_err(|e| Error::io("fstatfs", path, e))
    }

    /// The filesystem holding the open file `fd` (`fstatfs`).
    pub(crate) fn of_fd(fd: BorrowedFd<'_>) -> std::io::Result<Self> {
        sys::statfs_magic(fd).map(Self::from_magic)
    }
}

#[cfg(test)]
mod tests {
    use super::{Filesystem, FsClass};

    #[test]
    fn the_table_names_what_it_knows() {
        assert_eq!(Filesystem::from_magic(0xEF53).name, "ext2/ext3/ext4");
        assert_eq!(Filesystem::from_magic(0x6969).class, FsClass::Unsuitable);
        assert_eq!(Filesystem::from_magic(1).class, FsClass::Unknown);
        assert_eq!(Filesystem::of("/dev/shm").unwrap().class, FsClass::Memory);
    }
}
