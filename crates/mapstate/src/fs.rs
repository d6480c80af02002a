//! Files: opening them with typed errors, allocating their blocks, their
//! sizes, positioned reads and writes, and syncing directories. Every file
//! mapstate opens goes through [`open_file`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

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
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK);
    if let Open::Create(mode) = how {
        o.create(true).mode(mode);
    }
    let f = o
        .open(path)
        .map_err(|e| open_error(path, how.writes(), e))?;
    check_regular(path, &f)?;
    Ok(f)
}

/// Turns an `open(2)` failure into the most precise error.
pub(crate) fn open_error(path: &Path, write: bool, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotFound { path: path.into() },
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => Error::PermissionDenied {
            path: path.into(),
            write,
            source: e,
        },
        Some(libc::EISDIR) => Error::NotAFile {
            path: path.into(),
            kind: "directory",
        },
        _ => Error::io("open", path, e),
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

/// The length of `file` (`fstat`).
pub(crate) fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file
        .metadata()
        .map_err(|e| Error::io("fstat", path, e))?
        .len())
}

/// The permission bits of `file` (`fstat`).
pub(crate) fn file_mode(file: &File, path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    Ok(file
        .metadata()
        .map_err(|e| Error::io("fstat", path, e))?
        .permissions()
        .mode()
        & 0o7777)
}

/// `pread` of exactly `buf.len()` bytes at `off`.
pub(crate) fn pread(file: &File, path: &Path, buf: &mut [u8], off: u64) -> Result<()> {
    file.read_exact_at(buf, off)
        .map_err(|e| Error::io("pread", path, e))
}

/// `pwrite` of all of `buf` at `off`.
pub(crate) fn pwrite(file: &File, path: &Path, buf: &[u8], off: u64) -> Result<()> {
    file.write_all_at(buf, off)
        .map_err(|e| Error::io("pwrite", path, e))
}

/// `fdatasync(file)`.
pub(crate) fn fdatasync(file: &File, path: &Path) -> Result<()> {
    sys::fdatasync(sys::fd_of(file)).map_err(|e| Error::io("fdatasync", path, e))
}

/// `fsync` of the directory holding `path`, so that a file created or
/// renamed there keeps its name after a power cut.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
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
