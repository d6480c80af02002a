//! The locks on the durable file: the writer lock (an OFD lock on byte 0,
//! which the kernel drops when its holder dies, so a dead writer never
//! blocks anyone) and the build lock (`flock`, held while the live image is
//! opened or built, so that two processes never build it twice).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format;
use crate::store::files::StateFiles;
use crate::sys::{self, LockResult, LockWait};

/// The writer lock: byte 0 of the durable file.
const WRITER_LOCK: (u64, u64) = (0, 1);

/// Takes the writer lock on `file`, the durable file of `files` (waiting
/// for it if `wait` is [`LockWait::Block`]).
///
/// The lock is an OFD lock, so it belongs to the open file description, and
/// a process forked by any thread of the holder (`std::process::Command`
/// included) holds a copy of it until it execs. A writer closed just before
/// such a fork therefore still looks like a holder for a moment. A busy lock
/// whose holder published no pid (a live writer publishes its pid as soon as
/// it has opened) is retried for up to about 100 ms before `Locked` is
/// returned.
pub(crate) fn take_writer_lock(file: &File, files: &StateFiles, wait: LockWait) -> Result<()> {
    let (s, l) = WRITER_LOCK;
    let path = files.durable();
    let mut pause = Duration::from_micros(200);
    let mut waited = Duration::ZERO;
    loop {
        let r = sys::ofd_lock_exclusive(sys::fd_of(file), s, l, wait)
            .map_err(|e| Error::io("fcntl(F_OFD_SETLK)", path, e))?;
        if r == LockResult::Acquired {
            return Ok(());
        }
        let pid = holder_pid(files.live());
        if pid.is_some() || waited >= Duration::from_millis(100) {
            return Err(Error::Locked {
                path: path.into(),
                pid,
            });
        }
        std::thread::sleep(pause);
        waited += pause;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Whether some process holds the writer lock on `file` (asks the kernel;
/// takes no lock).
pub(crate) fn writer_lock_held(file: &File, path: &Path) -> Result<bool> {
    let (s, l) = WRITER_LOCK;
    sys::ofd_is_locked(sys::fd_of(file), s, l).map_err(|e| Error::io("fcntl(F_OFD_GETLK)", path, e))
}

/// The pid the current writer recorded in the live image at `live`, if any.
fn holder_pid(live: &Path) -> Option<u32> {
    let f = File::open(live).ok()?;
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, format::live::WRITER_PID).ok()?;
    Some(u32::from_le_bytes(b)).filter(|&p| p != 0)
}

/// Holds `flock(LOCK_EX)` on the durable file while the live image is
/// opened or built.
pub(crate) struct BuildLock<'a>(&'a File);

impl<'a> BuildLock<'a> {
    /// Takes the lock on `file` (the durable file at `path`), waiting for it.
    pub(crate) fn take(file: &'a File, path: &Path) -> Result<Self> {
        sys::flock_exclusive(sys::fd_of(file)).map_err(|e| Error::io("flock", path, e))?;
        Ok(Self(file))
    }
}

impl Drop for BuildLock<'_> {
    fn drop(&mut self) {
        let _ = sys::flock_unlock(sys::fd_of(self.0));
    }
}
