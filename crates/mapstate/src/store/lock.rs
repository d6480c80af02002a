//! The locks on the durable file, both exclusive OFD locks, which the
//! kernel drops when their holder dies (a dead writer never blocks anyone):
//! the writer lock (byte 0), and the build lock (byte 1), held while a
//! live image is checked or built, so that two processes never build it at
//! once and none replaces one a writer uses.
//!
//! Only a process that opened the file for writing can take an exclusive
//! lock; but any process that may read it can take a *shared* one on the
//! same byte, which blocks everybody's exclusive lock for as long as it
//! likes. mapstate never takes shared locks there, so a wait never waits for
//! one: it waits (polling, from 200 µs to 20 ms between tries) only while
//! the holder is exclusive (a writer, or an owner's process building), and a
//! shared holder is reported as [`Error::ForeignLock`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::format;
use crate::store::files::StateFiles;
use crate::sys::{self, LockKind, LockResult};

/// The writer lock: byte 0 of the durable file.
const WRITER_LOCK: u64 = 0;
/// The build lock: byte 1 of the durable file.
const BUILD_LOCK: u64 = 1;

/// Whether to wait for a lock another process holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Fail at once.
    No,
    /// Wait while its holder is exclusive (a process that may write).
    ForExclusive,
}

/// Takes the exclusive lock on `byte` of `file` (the file at `path`).
/// `Ok(false)` if it is held exclusively and `wait` is [`Wait::No`].
fn lock_byte(file: &File, path: &Path, byte: u64, what: &'static str, wait: Wait) -> Result<bool> {
    let fd = sys::fd_of(file);
    let mut backoff = Backoff::new();
    loop {
        match sys::ofd_try_lock_exclusive(fd, byte, 1)
            .map_err(|e| Error::io("fcntl(F_OFD_SETLK)", path, e))?
        {
            LockResult::Acquired => return Ok(true),
            LockResult::WouldBlock => {}
        }
        match sys::ofd_lock_holder(fd, byte, 1)
            .map_err(|e| Error::io("fcntl(F_OFD_GETLK)", path, e))?
        {
            Some(LockKind::Shared) => {
                return Err(Error::ForeignLock {
                    path: path.into(),
                    what,
                });
            }
            Some(LockKind::Exclusive) if wait == Wait::No => return Ok(false),
            // Held exclusively (wait for it), or let go meanwhile (try again).
            Some(LockKind::Exclusive) | None => {}
        }
        backoff.sleep();
    }
}

/// Takes the writer lock on `file`, the durable file of `files` (waiting
/// for the writer that holds it if `wait` says so).
///
/// The lock is an OFD lock, so it belongs to the open file description, and
/// a process forked by any thread of the holder (`std::process::Command`
/// included) holds a copy of it until it execs. A writer closed just before
/// such a fork therefore still looks like a holder for a moment. A busy lock
/// whose holder published no pid (a live writer publishes its pid as soon as
/// it has opened) is retried for up to about 100 ms before `Locked` is
/// returned.
pub(crate) fn take_writer_lock(file: &File, files: &StateFiles, wait: Wait) -> Result<()> {
    let path = files.durable();
    let mut backoff = Backoff::new();
    loop {
        if lock_byte(file, path, WRITER_LOCK, "writer lock", wait)? {
            return Ok(());
        }
        let holder = holder_pid(files.live());
        if holder.is_some() || backoff.slept() >= Duration::from_millis(100) {
            let (pid, elsewhere) = match holder {
                Some((pid, ns)) if ns == sys::pid_namespace() => (Some(pid), false),
                Some(_) => (None, true),
                None => (None, false),
            };
            return Err(Error::Locked {
                path: path.into(),
                pid,
                other_pid_namespace: elsewhere,
            });
        }
        backoff.sleep();
    }
}

/// Lets go of the writer lock taken on `file` (also for every descriptor
/// sharing its open file description, a forked child's among them).
pub(crate) fn release_writer_lock(file: &File) {
    let _ = sys::ofd_unlock(sys::fd_of(file), WRITER_LOCK, 1);
}

/// Whether a writer holds the writer lock on `file` (asks the kernel; takes
/// no lock). A shared lock there is no writer.
pub(crate) fn writer_lock_held(file: &File, path: &Path) -> Result<bool> {
    sys::ofd_lock_holder(sys::fd_of(file), WRITER_LOCK, 1)
        .map(|h| h == Some(LockKind::Exclusive))
        .map_err(|e| Error::io("fcntl(F_OFD_GETLK)", path, e))
}

/// Whether some process holds the build lock on `file` (is building or
/// checking the live image).
pub(crate) fn build_lock_held(file: &File, path: &Path) -> Result<bool> {
    sys::ofd_lock_holder(sys::fd_of(file), BUILD_LOCK, 1)
        .map(|h| h == Some(LockKind::Exclusive))
        .map_err(|e| Error::io("fcntl(F_OFD_GETLK)", path, e))
}

/// The pid the current writer recorded in the live image at `live`, if any,
/// and the inode of the pid namespace it is a pid of.
fn holder_pid(live: &Path) -> Option<(u32, u64)> {
    let f = crate::fs::open_file(live, crate::fs::Open::Read).ok()?;
    let mut pid = [0u8; 4];
    f.read_exact_at(&mut pid, format::live::WRITER_PID).ok()?;
    let mut ns = [0u8; 8];
    f.read_exact_at(&mut ns, format::live::WRITER_PIDNS).ok()?;
    let pid = u32::from_le_bytes(pid);
    (pid != 0).then(|| (pid, u64::from_le_bytes(ns)))
}

/// Holds the build lock on a durable file opened for writing.
pub(crate) struct BuildLock<'a> {
    file: &'a File,
}

impl<'a> BuildLock<'a> {
    /// Takes the lock on `file` (the durable file at `path`, opened for
    /// writing), waiting for another builder.
    pub(crate) fn take(file: &'a File, path: &Path) -> Result<Self> {
        lock_byte(file, path, BUILD_LOCK, "build lock", Wait::ForExclusive)?;
        Ok(Self { file })
    }
}

impl Drop for BuildLock<'_> {
    fn drop(&mut self) {
        let _ = sys::ofd_unlock(sys::fd_of(self.file), BUILD_LOCK, 1);
    }
}
