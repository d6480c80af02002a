//! Files: opening them with typed errors, allocating their blocks, their
//! sizes, positioned reads and writes, and syncing directories. Every file
//! mapstate opens goes through [`open_file`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::filesystem::Filesystem;
use crate::sys;

/// The largest reservation mapstate makes: 32 TiB (x86-64 user space is 128
/// TiB, and a writer reserves its state twice: the live image and its view).
pub const MAX_RESERVATION: u64 = 1 << 45;

/// How [`open_file`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Open {
    /// `O_RDONLY`.
    Read,
    /// `O_RDWR`; the file must exist.
    ReadWrite,
    /// `O_RDWR | O_CREAT` with these permission bits for a new file.
    Create(u32),
}

impl Open {
    fn writes(self) -> bool {
        self != Open::Read
    }
}

/// Opens `path` as `how` says, close-on-exec and without blocking on a
/// FIFO, and refuses anything but a regular file, with typed errors.
pub(crate) fn open_file(path: &Path, how: Open) -> Result<File> {
    let mut o = OpenOptions::new();
    o.read(true)
        .write(how.writes())
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOFOLLOW);
    if let Open::Create(mode) = how {
        o.create(true).mode(mode);
    }
    let f = o
        .open(path)
        .map_err(|e| open_error(path, how.writes(), e))?;
    check_regular(path, &f)?;
    Ok(f)
}

/// Opens `path`, a file of the state `owner` owns (a log, a journal, a
/// live image): as [`open_file`], then [`Owner::check`]s it.
pub(crate) fn open_owned(path: &Path, how: Open, owner: Owner) -> Result<File> {
    let f = open_file(path, how)?;
    owner.check(&f, path)?;
    Ok(f)
}

/// Creates `path` (`O_CREAT | O_EXCL | O_NOFOLLOW`: never an existing file,
/// never through a symbolic link), read-write, with `mode` less the umask.
pub(crate) fn create_new(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode & 0o777)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => Error::Foreign {
                path: path.into(),
                what: "it appeared while mapstate created it: another process made it".into(),
            },
            _ => open_error(path, true, e),
        })
}

/// Refuses a file on a filesystem where mapstate's guarantees cannot hold
/// (`FsClass::Unsuitable`: NFS, CIFS, FUSE, 9p, ramfs), unless `allow`.
pub(crate) fn check_filesystem(file: &File, path: &Path, allow: bool) -> Result<()> {
    if allow {
        return Ok(());
    }
    let fs = Filesystem::of_fd(sys::fd_of(file)).map_err(|e| Error::io("fstatfs", path, e))?;
    if fs.class == crate::filesystem::FsClass::Unsuitable {
        return Err(Error::UnsuitableFilesystem {
            path: path.into(),
            fs: fs.name,
            why: fs.note,
        });
    }
    Ok(())
}

/// What ENOENT at `path` is about: the outermost of its directories that
/// does not exist, or `path` itself (a missing file in an existing
/// directory). `create /missing/dir/x` then names `/missing`.
fn first_missing(path: &Path) -> PathBuf {
    let mut missing = path;
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() || std::fs::symlink_metadata(dir).is_ok() {
            break;
        }
        missing = dir;
    }
    missing.into()
}

/// Turns an `open(2)` failure into the most precise error.
pub(crate) fn open_error(path: &Path, write: bool, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotFound {
            path: first_missing(path),
        },
        Some(libc::EROFS) => Error::ReadOnlyFilesystem { path: path.into() },
        Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied {
            path: path.into(),
            write,
            source: e,
        },
        Some(libc::EISDIR) => Error::NotAFile {
            path: path.into(),
            kind: "directory",
        },
        Some(libc::ELOOP) => symlink_refused(path),
        _ => Error::io("open", path, e),
    }
}

/// The error for a symbolic link where a state's file should be: mapstate
/// never follows one (another user may have planted it to make the owner's
/// processes write elsewhere). Names the link's owner and target.
fn symlink_refused(path: &Path) -> Error {
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::symlink_metadata(path)
        .map_or_else(|_| "unknown".to_owned(), |m| m.uid().to_string());
    let target =
        std::fs::read_link(path).map_or_else(|_| "?".to_owned(), |t| t.display().to_string());
    Error::Foreign {
        path: path.into(),
        what: format!(
            "it is a symbolic link, owned by uid {owner}, to {target}; mapstate never follows \
             one (whoever made it may want the state's files written elsewhere): remove it, \
             or name the file itself"
        ),
    }
}

/// Refuses anything but a regular file.
pub(crate) fn check_regular(path: &Path, file: &File) -> Result<()> {
    let ft = file
        .metadata()
        .map_err(|e| Error::io("fstat", path, e))?
        .file_type();
    let kind = if ft.is_file() {
        return Ok(());
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    };
    Err(Error::NotAFile {
        path: path.into(),
        kind,
    })
}

/// Who owns a state: the durable file's owner, group and permission bits.
/// Every other file of the state must be owned by the same user and have
/// no permission the durable file lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Permission bits (`& 0o777`).
    pub(crate) mode: u32,
}

impl Owner {
    /// The owner of the durable file `file` at `path` (`fstat`).
    pub(crate) fn of(file: &File, path: &Path) -> Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let md = file.metadata().map_err(|e| Error::io("fstat", path, e))?;
        Ok(Self {
            uid: md.uid(),
            gid: md.gid(),
            mode: md.mode() & 0o777,
        })
    }

    /// Whether this process runs as the owner (or as root, which makes files
    /// for the owner and gives them to it).
    pub(crate) fn is_us(self) -> bool {
        let me = sys::euid();
        me == self.uid || me == 0
    }

    /// Checks that `file` (at `path`, a file of this state) is owned by the
    /// owner and grants nothing the durable file does not: a file another
    /// user planted, or one whose mode lets more users change it, is not
    /// trusted (`Error::Foreign`, naming its owner).
    pub(crate) fn check(self, file: &File, path: &Path) -> Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let md = file.metadata().map_err(|e| Error::io("fstat", path, e))?;
        let mode = md.mode() & 0o7777;
        if md.uid() != self.uid {
            return Err(Error::Foreign {
                path: path.into(),
                what: format!(
                    "owned by uid {}, not by the state's owner (uid {}): someone else made it",
                    md.uid(),
                    self.uid
                ),
            });
        }
        if mode & !self.mode != 0 {
            return Err(Error::Foreign {
                path: path.into(),
                what: format!(
                    "its mode {mode:o} allows what the state's ({:o}) does not",
                    self.mode
                ),
            });
        }
        Ok(())
    }

    /// Gives `file` (made by this process) to the owner, if this process is
    /// root making it for another user, and sets its permission bits.
    pub(crate) fn give(self, file: &File, path: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        if sys::euid() == 0 && self.uid != 0 {
            sys::fchown(sys::fd_of(file), self.uid, self.gid)
                .map_err(|e| Error::io("fchown", path, e))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode & self.mode))
            .map_err(|e| Error::io("fchmod", path, e))
    }
}

/// The length of `file` (`fstat`).
pub(crate) fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file
        .metadata()
        .map_err(|e| Error::io("fstat", path, e))?
        .len())
}

/// `pread` of exactly `buf.len()` bytes at `off`.
pub(crate) fn pread(file: &File, path: &Path, buf: &mut [u8], off: u64) -> Result<()> {
    file.read_exact_at(buf, off)
        .map_err(|e| Error::io("pread", path, e))
}

/// `pwrite` of all of `buf` at `off`; a full disk (or quota) is
/// [`Error::NoSpace`].
pub(crate) fn pwrite(file: &File, path: &Path, buf: &[u8], off: u64) -> Result<()> {
    file.write_all_at(buf, off)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => Error::NoSpace {
                path: path.into(),
                wanted: off.saturating_add(buf.len() as u64),
                source: e,
            },
            _ => Error::io("pwrite", path, e),
        })
}

/// A file made whole before anyone can see it: created unnamed
/// (`O_TMPFILE`) in a directory, or, where the filesystem lacks that, under
/// an unpredictable temporary name there (`O_EXCL`, removed if the file is
/// dropped unnamed), then given its name in one step. A process killed
/// before that leaves nothing behind (or, on a filesystem without
/// `O_TMPFILE`, a `.NAME.mapstate-*` file that `Writer::remove` deletes).
#[derive(Debug)]
pub(crate) struct NewFile {
    file: File,
    /// The temporary name, when the filesystem has no `O_TMPFILE`.
    temp: Option<PathBuf>,
}

impl NewFile {
    /// A new empty file in the directory of `path` (which it will be
    /// named), with permission bits `mode` (less the umask).
    pub(crate) fn create(path: &Path, mode: u32) -> Result<Self> {
        let dir = parent_dir(path);
        let mut o = OpenOptions::new();
        o.read(true).write(true).mode(mode);
        match o
            .clone()
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(dir)
        {
            Ok(file) => {
                return Ok(Self { file, temp: None });
            }
            // No O_TMPFILE on this filesystem (or kernel): a named temp.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {}
            Err(e) => return Err(open_error(dir, true, e)),
        }
        let temp = temp_name(path);
        let file = o
            .create_new(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&temp)
            .map_err(|e| open_error(&temp, true, e))?;
        Ok(Self {
            file,
            temp: Some(temp),
        })
    }

    /// The file, to write it before it is named.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Names it `path`; `false` (and the file stays unnamed) if something
    /// has that name already.
    pub(crate) fn name_new(&mut self, path: &Path) -> Result<bool> {
        let r = match &self.temp {
            None => sys::link_fd(sys::fd_of(self.file()), path),
            Some(t) => std::fs::hard_link(t, path),
        };
        match r {
            Ok(()) => {
                if let Some(t) = self.temp.take() {
                    let _ = std::fs::remove_file(t);
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("link", path, e)),
        }
    }

    /// Names it `path`, replacing in one step whatever had that name.
    pub(crate) fn name_replacing(&mut self, path: &Path) -> Result<()> {
        if self.temp.is_none() {
            let t = temp_name(path);
            sys::link_fd(sys::fd_of(self.file()), &t).map_err(|e| Error::io("link", &t, e))?;
            self.temp = Some(t);
        }
        let t = self.temp.take().expect("named above");
        std::fs::rename(&t, path).map_err(|e| {
            let _ = std::fs::remove_file(&t);
            Error::io("rename", &t, e)
        })
    }

    /// The file again, through the name it was just given (so that
    /// `/proc/PID/fd` and `lsof` show that name, not an unnamed file's),
    /// checked to be the same file.
    pub(crate) fn reopen(&self, path: &Path) -> Result<File> {
        use std::os::unix::fs::MetadataExt as _;
        let f = open_file(path, Open::ReadWrite)?;
        let (a, b) = (
            f.metadata().map_err(|e| Error::io("fstat", path, e))?,
            self.file()
                .metadata()
                .map_err(|e| Error::io("fstat", path, e))?,
        );
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            return Err(Error::io(
                "open",
                path,
                io::Error::other("another process replaced the file just created"),
            ));
        }
        Ok(f)
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if let Some(t) = self.temp.take() {
            let _ = std::fs::remove_file(t);
        }
    }
}

/// The error of a new file that cannot take the name `path`: something
/// has it already (mapstate never overwrites a file it did not make).
pub(crate) fn name_taken(path: &Path) -> Error {
    Error::io("link", path, io::Error::from_raw_os_error(libc::EEXIST))
}

/// The directory holding `path` (`.` for a bare name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// An unpredictable temporary name beside `path`: `.NAME.mapstate-RANDOM`.
pub(crate) fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}{TEMP_MARK}{:016x}", sys::random_u64()))
}

/// What every temporary name of mapstate holds after the file's own name.
pub(crate) const TEMP_MARK: &str = ".mapstate-";

/// `fdatasync(file)`.
pub(crate) fn fdatasync(file: &File, path: &Path) -> Result<()> {
    sys::fdatasync(sys::fd_of(file)).map_err(|e| Error::io("fdatasync", path, e))
}

/// Removes the file at `path`; one that is not there is no error.
pub(crate) fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("unlink", path, e)),
        _ => Ok(()),
    }
}

/// `fsync` of the directory holding `path`, so that a file created or
/// renamed there keeps its name after a power cut.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    let f = File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    sys::fsync(sys::fd_of(&f)).map_err(|e| Error::io("fsync", dir, e))
}

/// Checks a size given to mapstate (a maximum size, a length to reserve)
/// and rounds it up to whole pages.
pub(crate) fn check_size(what: &'static str, size: u64) -> Result<u64> {
    if size == 0 {
        return Err(Error::InvalidSize {
            what,
            size,
            reason: "it must be at least one byte".into(),
        });
    }
    if size > MAX_RESERVATION {
        return Err(Error::InvalidSize {
            what,
            size,
            reason: format!(
                "mapstate reserves at most {MAX_RESERVATION} bytes (32 TiB) of address space"
            ),
        });
    }
    Ok(sys::page_round_up(size as usize).expect("size <= 32 TiB cannot overflow") as u64)
}

/// `fallocate(fd, 0, from, to - from)` (nothing if `to <= from`): blocks
/// for the bytes `from..to`, the file extended to `to` if shorter. Only the
/// new part is asked for: on tmpfs a fallocate walks every page of its range.
/// Failures become typed errors.
pub(crate) fn allocate(path: &Path, file: &File, from: u64, to: u64) -> Result<()> {
    if to <= from {
        return Ok(());
    }
    let fd = sys::fd_of(file);
    sys::fallocate(fd, from, to - from).map_err(|e| growth_error(path, Some(fd), e, to))
}

/// The typed error of a failed growth of `path` to `to` bytes (`fallocate`
/// or the `mmap` that follows it).
pub(crate) fn growth_error(
    path: &Path,
    fd: Option<std::os::fd::BorrowedFd<'_>>,
    e: io::Error,
    to: u64,
) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => Error::NoSpace {
            path: path.into(),
            wanted: to,
            source: e,
        },
        Some(libc::EOPNOTSUPP) => Error::FallocateUnsupported {
            path: path.into(),
            fs: fd
                .and_then(|fd| Filesystem::of_fd(fd).ok())
                .map_or("a filesystem without fallocate", |f| f.name)
                .into(),
        },
        Some(libc::EFBIG) => Error::InvalidSize {
            what: "file size",
            size: to,
            reason: "larger than the filesystem or RLIMIT_FSIZE allows (EFBIG)".into(),
        },
        _ => Error::io("grow (fallocate, mmap)", path, e),
    }
}

/// The error for a growth that failed in the extend-on-write handler.
pub(crate) fn growth_failure(path: &Path, f: sys::grow::Failure, max: u64) -> Error {
    if f.errno == 0 {
        Error::PastMaximum {
            path: path.into(),
            offset: f.offset as u64,
            max,
        }
    } else {
        growth_error(
            path,
            None,
            io::Error::from_raw_os_error(f.errno),
            f.wanted as u64,
        )
    }
}
