//! [`StateFiles`]: where the files of a state are. One place names them,
//! for the library and for the tools around it.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::filesystem::{Filesystem, FsClass};
use crate::fs::Owner;
use crate::sys;

/// The files of a state named `NAME`: the durable image (`NAME`), the redo
/// log (`NAME-wal`), the checkpoint journal (`NAME-ckpt`) and the live
/// image, named after the durable file's device and inode
/// (`mapstate-DEV-INO.live`), on tmpfs in a directory only the state's
/// owner can create files in: `/run/mapstate` for root when `/run` is
/// tmpfs, else `/dev/shm/mapstate-UID` (made by mapstate, mode 0711); or in
/// the live directory the writer was given; or `NAME-live` beside the
/// durable file when `/dev/shm` is not tmpfs.
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// use mapstate::{StateFiles, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("state");
/// let w = Writer::options().create(true).live_dir(dir.path()).open(&path)?;
/// let files = StateFiles::of(&path, Some(dir.path()))?;
/// assert_eq!(files.log(), dir.path().join("state-wal"));
/// assert!(files.live().exists());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateFiles {
    durable: PathBuf,
    log: PathBuf,
    journal: PathBuf,
    live: PathBuf,
    /// Whether the live image's directory is one mapstate makes and checks
    /// (the default), rather than one the program named.
    managed_live_dir: bool,
}

impl StateFiles {
    /// The files of the state whose durable file is `path`, with its live
    /// image in `live_dir` (`None`: the default place). The durable file
    /// must exist: the live image is named after its device and inode.
    pub fn of(path: impl AsRef<Path>, live_dir: Option<&Path>) -> Result<Self> {
        let path = path.as_ref();
        let md =
            std::fs::symlink_metadata(path).map_err(|e| crate::fs::open_error(path, false, e))?;
        Ok(Self::named(path, md.dev(), md.ino(), md.uid(), live_dir))
    }

    /// As [`StateFiles::of`] for a durable file already open as `file`.
    pub(crate) fn of_open(path: &Path, file: &File, live_dir: Option<&Path>) -> Result<Self> {
        let md = file.metadata().map_err(|e| Error::io("fstat", path, e))?;
        Ok(Self::named(path, md.dev(), md.ino(), md.uid(), live_dir))
    }

    fn named(path: &Path, dev: u64, ino: u64, owner: u32, live_dir: Option<&Path>) -> Self {
        let name = format!("mapstate-{dev:x}-{ino}.live");
        let (live, managed_live_dir) = match live_dir {
            Some(d) => (d.join(name), false),
            None => match default_live_dir(owner) {
                Some(d) => (d.join(name), true),
                None => (beside(path, "-live"), false),
            },
        };
        Self {
            durable: path.into(),
            log: beside(path, "-wal"),
            journal: beside(path, "-ckpt"),
            live,
            managed_live_dir,
        }
    }

    /// Makes sure the live image's directory exists and that only the
    /// state's owner can create files in it, before a live image is built
    /// there: a directory mapstate manages is made (mode 0711, so that other
    /// users who may read the state reach its live image) if missing, and
    /// refused if someone else made it or it lets others write. A directory
    /// the program named is taken as it is.
    pub(crate) fn prepare_live_dir(&self, owner: Owner) -> Result<()> {
        if !self.managed_live_dir {
            return Ok(());
        }
        let dir = crate::fs::parent_dir(&self.live);
        match std::fs::DirBuilder::new().mode(0o711).create(dir) {
            Ok(()) => {
                let f = File::open(dir).map_err(|e| Error::io("open", dir, e))?;
                if sys::euid() == 0 && owner.uid != 0 {
                    sys::fchown(sys::fd_of(&f), owner.uid, owner.gid)
                        .map_err(|e| Error::io("fchown", dir, e))?;
                }
                // The umask may have narrowed it.
                f.set_permissions(std::fs::Permissions::from_mode(0o711))
                    .map_err(|e| Error::io("fchmod", dir, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("mkdir", dir, e)),
        }
        let md = std::fs::symlink_metadata(dir).map_err(|e| Error::io("lstat", dir, e))?;
        if !md.is_dir() || md.uid() != owner.uid || md.mode() & 0o022 != 0 {
            return Err(Error::Foreign {
                path: dir.into(),
                what: format!(
                    "the live images' directory is {} owned by uid {} with mode {:o}, \
                     not a directory of the state's owner (uid {}) that only it may write: \
                     another user made it; remove it (as root), or give the state a live \
                     directory of its own",
                    if md.is_dir() {
                        "a directory"
                    } else {
                        "not a directory, but something"
                    },
                    md.uid(),
                    md.mode() & 0o7777,
                    owner.uid
                ),
            });
        }
        Ok(())
    }

    /// The durable image: the file the user names, consistent on disk as of
    /// the last checkpoint.
    pub fn durable(&self) -> &Path {
        &self.durable
    }

    /// The redo log: every commit since the last checkpoint.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The checkpoint journal: the pages a checkpoint is writing into the
    /// durable image.
    pub fn journal(&self) -> &Path {
        &self.journal
    }

    /// The live image: the committed state now, which every process maps.
    pub fn live(&self) -> &Path {
        &self.live
    }

    /// All four, the live image first and the durable image last (the
    /// order in which a state is removed).
    pub fn all(&self) -> [&Path; 4] {
        [&self.live, &self.log, &self.journal, &self.durable]
    }

    /// Temporary files of this state that a process killed while it made
    /// one of them left behind (`.NAME.mapstate-*` beside each of the four;
    /// only on filesystems without `O_TMPFILE`, or in the instant between
    /// naming and renaming a file).
    pub(crate) fn temporaries(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in self.all() {
            let Some(name) = p.file_name() else { continue };
            let prefix = format!(".{}{}", name.to_string_lossy(), crate::fs::TEMP_MARK);
            let Ok(dir) = std::fs::read_dir(crate::fs::parent_dir(p)) else {
                continue;
            };
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    out.push(e.path());
                }
            }
        }
        out
    }
}

/// Where live images go by default, when it is tmpfs: a directory per
/// owner in it.
const SHM: &str = "/dev/shm";

/// Where root's live images go when `/run` is tmpfs (only root may create
/// files in `/run`).
const RUN: &str = "/run/mapstate";

/// The directory of the live images of states owned by `uid`: one no other
/// user can create files in. `None` without a tmpfs for it (the live image
/// then goes beside the durable file).
fn default_live_dir(uid: u32) -> Option<PathBuf> {
    let tmpfs = |p: &str| Filesystem::of(p).is_ok_and(|f| f.class == FsClass::Memory);
    if uid == 0 && tmpfs("/run") {
        return Some(PathBuf::from(RUN));
    }
    tmpfs(SHM).then(|| Path::new(SHM).join(format!("mapstate-{uid}")))
}

/// `path` with `suffix` appended to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
