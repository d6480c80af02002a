//! Errors: what happened, to which file, with the errno, and what to do.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The result type of mapstate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error mapstate returns.
///
/// Each variant carries what the user needs to act: the path, the operation
/// and the errno where the kernel said no, and the numbers where a limit was
/// hit. `Display` ends with a hint saying what to do. `Debug` names the
/// variant and gives the same text (`NotFound: state.db does not exist:
/// ...`), so that `fn main() -> Result<(), Box<dyn std::error::Error>>`
/// prints something a user can act on; `{:#?}` adds the underlying error.
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("state");
/// use mapstate::{Error, Writer};
/// let w = Writer::options().create(true).len(4096).open(&path)?;
/// // One writer per state: a second one is told who holds it.
/// match Writer::open(&path) {
///     Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
///     other => panic!("{other:?}"),
/// }
/// # w.remove()?;
/// # Ok(()) }
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on a file failed.
    #[error("{op} of {} failed: {} ({}){}", path.display(), source, errno_name(source), io_hint(source))]
    Io {
        /// The operation, such as `open`, `fallocate`, `msync`.
        op: &'static str,
        /// The file it was done on.
        path: PathBuf,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
    /// The file does not exist.
    #[error(
        "{} does not exist: create it first (a state: open with create enabled, in a directory \
         that exists; a directory: mkdir -p it)",
        path.display()
    )]
    NotFound {
        /// The missing path: the state's file, or the outermost of its
        /// directories that does not exist.
        path: PathBuf,
    },
    /// The process may not open the file as asked.
    #[error(
        "permission denied opening {} for {}: check the file's owner and mode (ls -l), or open it read-only",
        path.display(),
        if *write { "writing" } else { "reading" }
    )]
    PermissionDenied {
        /// The file.
        path: PathBuf,
        /// Whether write access was asked for.
        write: bool,
        /// The kernel's error (EACCES, EPERM or EROFS).
        #[source]
        source: io::Error,
    },
    /// The file is on a read-only filesystem and was to be opened for
    /// writing.
    #[error(
        "{} is on a read-only filesystem: open it for reading only (a Reader), or remount the \
         filesystem read-write",
        path.display()
    )]
    ReadOnlyFilesystem {
        /// The file.
        path: PathBuf,
    },
    /// The state is on a filesystem where mapstate's guarantees cannot
    /// hold (NFS, CIFS, FUSE, 9p, ramfs: locks, shared mappings or syncs
    /// that are emulated, per host, or ignored).
    #[error(
        "{} is on {fs}, where mapstate cannot keep its promises: {why}; use a local \
         filesystem, or open with `allow_unsuitable_filesystem(true)` accepting that \
         readers on other hosts see stale states and that crash and lock guarantees may not hold",
        path.display()
    )]
    UnsuitableFilesystem {
        /// The file.
        path: PathBuf,
        /// The filesystem's name.
        fs: &'static str,
        /// Why.
        why: &'static str,
    },
    /// The path names something that is not a regular file.
    #[error("{} is a {kind}, not a regular file: name a file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead (`directory`, `device`, ...).
        kind: &'static str,
    },
    /// A size given to mapstate cannot be used.
    #[error("invalid {what} of {size} bytes: {reason}")]
    InvalidSize {
        /// Which size (`maximum size`, `length`, ...).
        what: &'static str,
        /// The value given.
        size: u64,
        /// Why it cannot be used, and the allowed range.
        reason: String,
    },
    /// A byte range reaches past the end of the mapped part.
    #[error(
        "range {offset}..{} is outside the mapped {size} bytes: grow the mapping first or use a smaller offset",
        offset.saturating_add(*len)
    )]
    OutOfBounds {
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Bytes currently mapped.
        size: u64,
    },
    /// A typed access at an offset that is not a multiple of the type's alignment.
    #[error(
        "offset {offset} is not aligned for {type_name} (alignment {align}): use an offset that is a multiple of {align}"
    )]
    Misaligned {
        /// The offset.
        offset: u64,
        /// The type's alignment.
        align: usize,
        /// The type.
        type_name: &'static str,
    },
    /// A write to a mapping, or a range of it, that is read-only.
    #[error(
        "cannot write {len} bytes at offset {offset} of {}: the mapping or that range is read-only; \
         open it writable or protect the range ReadWrite first",
        path.display()
    )]
    ReadOnly {
        /// The file.
        path: PathBuf,
        /// Start of the write.
        offset: u64,
        /// Length of the write.
        len: u64,
    },
    /// The filesystem cannot preallocate blocks (`fallocate` is not supported).
    #[error(
        "{} is on {fs}, which does not support fallocate: without it a full disk would turn a store into SIGBUS, \
         so mapstate refuses to grow files there; use ext4, xfs, btrfs or tmpfs",
        path.display()
    )]
    FallocateUnsupported {
        /// The file.
        path: PathBuf,
        /// The filesystem's name.
        fs: String,
    },
    /// The filesystem (or a quota) has no room for the bytes asked for.
    #[error(
        "no space to grow {} to {wanted} bytes ({}): free space on the filesystem, raise the quota, or use a smaller size",
        path.display(), errno_name(source)
    )]
    NoSpace {
        /// The file.
        path: PathBuf,
        /// The size that was asked for.
        wanted: u64,
        /// ENOSPC or EDQUOT.
        #[source]
        source: io::Error,
    },
    /// A store through an extend-on-write view landed past the maximum size.
    #[error(
        "a store at offset {offset} of {} is past its maximum size of {max} bytes: the transaction was discarded; \
         keep stores below the maximum, or recreate the state with a larger one",
        path.display()
    )]
    PastMaximum {
        /// The file that could not grow.
        path: PathBuf,
        /// The offset of the store (page granularity).
        offset: u64,
        /// The maximum size.
        max: u64,
    },
    /// Locking pages in memory would pass `RLIMIT_MEMLOCK`.
    #[error(
        "cannot lock {requested} bytes in memory: RLIMIT_MEMLOCK is {} (soft) / {} (hard) for this process ({}); \
         raise it with `ulimit -l`, `prlimit --memlock`, LimitMEMLOCK= in a systemd unit, \
         /etc/security/limits.conf, or grant CAP_IPC_LOCK",
        fmt_limit(*soft), fmt_limit(*hard), errno_name(source)
    )]
    MemlockLimit {
        /// Bytes asked to lock.
        requested: u64,
        /// The soft limit in bytes (`None`: unlimited).
        soft: Option<u64>,
        /// The hard limit in bytes (`None`: unlimited).
        hard: Option<u64>,
        /// ENOMEM or EPERM from the kernel.
        #[source]
        source: io::Error,
    },
    /// A feature the filesystem or kernel does not offer here.
    #[error("{what} is not supported for {} ({}): {hint}", path.display(), errno_name(source))]
    Unsupported {
        /// The feature, such as `MAP_SYNC`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What to do instead.
        hint: &'static str,
        /// The kernel's answer (usually EOPNOTSUPP or EINVAL).
        #[source]
        source: io::Error,
    },
    /// The file is not a mapstate file (its magic number is wrong).
    #[error("{} is not a mapstate file ({what}): check the path; mapstate never overwrites foreign files", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Which file of the state and what was found.
        what: String,
    },
    /// The file was written by a newer mapstate.
    #[error("{} has format version {version}, but this build reads up to {supported}: upgrade mapstate", path.display())]
    TooNew {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The file is shorter than its header says.
    #[error("{} is truncated: {len} bytes, but at least {expected} are needed; restore it from a backup", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The length it must have.
        expected: u64,
    },
    /// The file's checksums or fields are inconsistent.
    #[error("{} is corrupt: {what}; restore it from a backup (`mapstate verify` shows details)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Another writer holds the state.
    #[error(
        "{} is locked by another writer{}: close it first, or open with `wait_for_lock` \
         (`--wait-for-lock` on the command line) to wait for it",
        path.display(),
        match (pid, other_pid_namespace) {
            (Some(p), _) => format!(" (pid {p})"),
            (None, true) => " (a process in another pid namespace: a container, say)".to_owned(),
            (None, false) => " (it recorded no pid: a writer still opening, or a child process \
                               forked by a writer that has not exec'd yet)".to_owned(),
        }
    )]
    Locked {
        /// The durable file.
        path: PathBuf,
        /// The holder's process id, if it recorded one in this process's pid
        /// namespace.
        pid: Option<u32>,
        /// The holder runs in another pid namespace, where its pid means
        /// nothing here.
        other_pid_namespace: bool,
    },
    /// A lock mapstate uses on the state's durable file is held in a way no
    /// mapstate process holds it: a shared lock, which any process that may
    /// read the file can take, blocks the writer lock or the build lock.
    /// mapstate does not wait for it.
    #[error(
        "the {what} of {} is blocked by a shared lock, which no mapstate process takes: \
         a process that may read the file holds it (`lslocks` shows which); stop it",
        path.display()
    )]
    ForeignLock {
        /// The durable file.
        path: PathBuf,
        /// Which lock (`writer lock`, `build lock`).
        what: &'static str,
    },
    /// A writer has the state open, but its live image is not the one this
    /// reader maps: it is in another mount namespace (a container with its
    /// own `/dev/shm`), or the writer opened the state after this reader
    /// built a private live image, or a writer replaced the live image this
    /// reader maps (it found it damaged or out of date after a kill).
    /// Reading on would silently give an old state.
    #[error(
        "the writer of {} is not visible from here: {why}; open the reader again, or from \
         where the writer's live image is (a container with its own /dev/shm does not see \
         the host's)",
        path.display()
    )]
    WriterNotVisible {
        /// The durable file.
        path: PathBuf,
        /// What was seen.
        why: String,
    },
    /// A commit copied from another state ([`Writer::apply`]) is not the
    /// one that follows this state's last commit.
    ///
    /// [`Writer::apply`]: crate::Writer::apply
    #[error(
        "commit {got} cannot be applied to {}, whose last commit is {last}: apply the commits \
         in order, each right after the one before, from a copy of the state as of the commit \
         before the first (`Reader::backup`)",
        path.display()
    )]
    OutOfOrder {
        /// The durable file.
        path: PathBuf,
        /// This state's last commit.
        last: u64,
        /// The commit offered.
        got: u64,
    },
    /// An earlier I/O error makes every later operation fail: after a failed
    /// sync the kernel may have dropped the dirty pages, so a retry could
    /// falsely succeed.
    #[error("a previous I/O error occurred on {} ({cause}): nothing after it is durable; drop this handle and reopen", path.display())]
    Poisoned {
        /// The file.
        path: PathBuf,
        /// The first error.
        cause: String,
    },
    /// The writer died while applying a commit, and this reader may not repair it.
    #[error(
        "the writer of {} died while applying a commit: open it for writing (or run `mapstate recover`) to finish it",
        path.display()
    )]
    WriterDied {
        /// The durable file.
        path: PathBuf,
    },
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.debug_struct(self.variant())
                .field("message", &format_args!("{self}"))
                .field("source", &std::error::Error::source(self))
                .finish()
        } else {
            write!(f, "{}: {self}", self.variant())
        }
    }
}

impl Error {
    /// The variant's name, as `Debug` prints it.
    fn variant(&self) -> &'static str {
        match self {
            Error::Io { .. } => "Io",
            Error::NotFound { .. } => "NotFound",
            Error::PermissionDenied { .. } => "PermissionDenied",
            Error::ReadOnlyFilesystem { .. } => "ReadOnlyFilesystem",
            Error::UnsuitableFilesystem { .. } => "UnsuitableFilesystem",
            Error::NotAFile { .. } => "NotAFile",
            Error::InvalidSize { .. } => "InvalidSize",
            Error::OutOfBounds { .. } => "OutOfBounds",
            Error::Misaligned { .. } => "Misaligned",
            Error::ReadOnly { .. } => "ReadOnly",
            Error::FallocateUnsupported { .. } => "FallocateUnsupported",
            Error::NoSpace { .. } => "NoSpace",
            Error::PastMaximum { .. } => "PastMaximum",
            Error::MemlockLimit { .. } => "MemlockLimit",
            Error::Unsupported { .. } => "Unsupported",
            Error::Foreign { .. } => "Foreign",
            Error::TooNew { .. } => "TooNew",
            Error::Truncated { .. } => "Truncated",
            Error::Corrupt { .. } => "Corrupt",
            Error::Locked { .. } => "Locked",
            Error::ForeignLock { .. } => "ForeignLock",
            Error::WriterNotVisible { .. } => "WriterNotVisible",
            Error::OutOfOrder { .. } => "OutOfOrder",
            Error::Poisoned { .. } => "Poisoned",
            Error::WriterDied { .. } => "WriterDied",
        }
    }

    /// Builds [`Error::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The errno behind this error, if the kernel reported one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. }
            | Error::PermissionDenied { source, .. }
            | Error::NoSpace { source, .. }
            | Error::MemlockLimit { source, .. }
            | Error::Unsupported { source, .. } => source.raw_os_error(),
            Error::ReadOnlyFilesystem { .. } => Some(libc::EROFS),
            _ => None,
        }
    }
}

fn fmt_limit(l: Option<u64>) -> String {
    l.map_or_else(|| "unlimited".into(), |v| format!("{v} bytes"))
}

/// The symbolic name of an errno, such as `ENOSPC`.
pub(crate) fn errno_name(e: &io::Error) -> ErrnoName {
    ErrnoName(e.raw_os_error())
}

/// The symbolic name of errno `n`, such as `ENOSPC` (`errno N` for one
/// without a name here).
pub(crate) fn errno_name_of(n: i32) -> String {
    ErrnoName(Some(n)).to_string()
}

/// Displays an errno by its symbolic name.
pub(crate) struct ErrnoName(Option<i32>);

impl fmt::Display for ErrnoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(n) = self.0 else {
            return f.write_str("no errno");
        };
        let name = match n {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::EROFS => "EROFS",
            libc::EOVERFLOW => "EOVERFLOW",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::EDQUOT => "EDQUOT",
            libc::ETXTBSY => "ETXTBSY",
            _ => return write!(f, "errno {n}"),
        };
        f.write_str(name)
    }
}

fn io_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => {
            ": the filesystem or quota is full; free space and retry"
        }
        Some(libc::EACCES | libc::EPERM) => ": check the file's owner and mode",
        Some(libc::EROFS) => ": the filesystem is mounted read-only",
        Some(libc::EEXIST) => {
            ": something has that name already, and mapstate never overwrites \
                               a file it did not make; choose another name or remove it"
        }
        Some(libc::EIO) => ": the device reported an I/O error; check `dmesg`, then reopen",
        Some(libc::ENOMEM) => {
            ": out of memory or address space (check `ulimit -v` and vm.max_map_count)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    /// `fn main() -> Result<(), Box<dyn Error>>` prints `Debug`: it printed
    /// `NotFound { path: "…" }`, without the text that says what to do.
    #[test]
    fn debug_names_the_variant_and_says_what_to_do() {
        let e = Error::NotFound {
            path: "/x/state.db".into(),
        };
        let d = format!("{e:?}");
        assert!(
            d.starts_with("NotFound: /x/state.db does not exist: create it first ("),
            "{d}"
        );
        let e = Error::io("open", "/x", std::io::Error::from_raw_os_error(13));
        let d = format!("{e:#?}");
        assert!(
            d.starts_with("Io {") && d.contains("EACCES") && d.contains("source: Some("),
            "{d}"
        );
    }
}
