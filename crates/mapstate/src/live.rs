//! The live image: the committed state now, which every process maps. It
//! lives on tmpfs (`/dev/shm/mapstate-DEV-INO.live`), so it survives any
//! process crash but not the OS; a missing image, or one from another boot,
//! is rebuilt from the durable image plus the log.
//!
//! Page 0 holds the shared header (`format::live`): the sequence lock that
//! readers validate their copies with, the length, the writer's pid and the
//! notification futex. The state's bytes follow at [`PAGE`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::durable::{Durable, Journal};
use crate::error::{Error, Result};
use crate::format::{self, PAGE, live};
use crate::log::{Log, Record};
use crate::sys::grow::{Growth, Spec as GrowSpec};
use crate::sys::{self, MapKind, Protection, Reservation};

use crate::notify::mtime::{self, MtimeClock};

/// `FUTEX_WAKE`'s count for "every waiter". The kernel reads the count as a
/// signed `int`: `u32::MAX` is -1 there, and wakes exactly one waiter (the
/// lost wake-up the cross-process stress test found).
pub(crate) const WAKE_ALL: u32 = i32::MAX as u32;

/// A mapped live image.
#[derive(Debug)]
pub(crate) struct Live {
    /// A reader's data mapping follows the file from the fault handler
    /// (dropped first, before the reservation and the file).
    grow: Option<Growth>,
    pub(crate) res: Reservation,
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// Data bytes mapped (a multiple of the page size).
    mapped: u64,
    writable: bool,
    /// Whether the header page is writable: always for the writer; for a
    /// reader when it may open the live image read-write (then it can
    /// register as a waiter, so that commits wake it).
    header_writable: bool,
    /// The writer's rate limit for setting the files' mtimes after commits.
    pub(crate) mtime: MtimeClock,
}

/// Where the live image of `durable` lives: on tmpfs under `dir` if given,
/// else `/dev/shm` when it is tmpfs, else beside the durable file (`NAME-live`,
/// where the recorded boot id tells a stale image apart).
pub(crate) fn live_path(dir: Option<&Path>, durable: &Durable) -> Result<PathBuf> {
    let md = durable
        .file
        .metadata()
        .map_err(|e| Error::io("fstat", &durable.path, e))?;
    let name = format!("mapstate-{:x}-{}.live", md.dev(), md.ino());
    if let Some(d) = dir {
        return Ok(d.join(name));
    }
    let shm = Path::new("/dev/shm");
    let on_tmpfs = File::open(shm)
        .ok()
        .and_then(|f| sys::fs_kind(sys::fd_of(&f)).ok())
        == Some(sys::FsKind::Tmpfs);
    Ok(if on_tmpfs {
        shm.join(name)
    } else {
        crate::durable::companion(&durable.path, "-live")
    })
}

impl Live {
    fn map(
        file: File,
        path: &Path,
        max_size: u64,
        writable: bool,
        header_writable: bool,
    ) -> Result<Self> {
        let mut res = Reservation::new((PAGE + max_size) as usize)
            .map_err(|e| Error::io("mmap (reserve)", path, e))?;
        let prot = if header_writable {
            Protection::ReadWrite
        } else {
            Protection::ReadOnly
        };
        res.map_file(
            0,
            PAGE as usize,
            sys::fd_of(&file),
            0,
            prot,
            MapKind::Shared,
            false,
            false,
        )
        .map_err(|e| Error::io("mmap", path, e))?;
        // A reader's raw pointer (`Reader::as_ptr`) may reach bytes a later
        // commit added: a fault there maps what the file has by then.
        let grow = if writable {
            None
        } else {
            Some(
                Growth::register(
                    &res,
                    sys::fd_of(&file),
                    GrowSpec {
                        file_off: 0,
                        kind: MapKind::Shared,
                        writable: false,
                        limit: (PAGE + max_size) as usize,
                        mapped: PAGE as usize,
                        prefault: false,
                    },
                )
                .map_err(|e| Error::io("register the live image for growth", path, e))?,
            )
        };
        Ok(Self {
            grow,
            res,
            file,
            path: path.into(),
            mapped: 0,
            writable,
            header_writable,
            mtime: MtimeClock::default(),
        })
    }

    /// Opens an existing live image of the state `file_id` built during this
    /// boot; `None` if it is missing or must be rebuilt.
    pub(crate) fn open_existing(
        path: &Path,
        file_id: &[u8; 16],
        max_size: u64,
        writable: bool,
    ) -> Result<Option<Self>> {
        let open = |write: bool| crate::map::open_file(path, write, false, 0);
        // A reader opens read-write if it may (to register as a waiter).
        let (file, header_writable) = match open(true) {
            Ok(f) => (f, true),
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) if writable => return Err(e),
            Err(_) => match open(false) {
                Ok(f) => (f, false),
                Err(Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            },
        };
        let flen = file
            .metadata()
            .map_err(|e| Error::io("fstat", path, e))?
            .len();
        if flen < PAGE {
            return Ok(None);
        }
        let mut l = Self::map(file, path, max_size, writable, header_writable)?;
        let mut hdr = [0u8; 48];
        l.res.read(0, &mut hdr);
        let ok = hdr[..8] == format::LIVE_MAGIC
            && u32::from_le_bytes(hdr[8..12].try_into().expect("4 bytes")) == format::VERSION
            && hdr[16..32] == file_id[..]
            && hdr[32..48] == format::boot_id()
            && l.res
                .atomic_u64(live::READY as usize)
                .load(Ordering::Acquire)
                == 1;
        let len = l.len_word().load(Ordering::Acquire);
        if !ok || len > max_size || PAGE + len > flen {
            return Ok(None);
        }
        l.ensure_mapped(len)?;
        Ok(Some(l))
    }

    /// Builds a fresh live image at `path` from the durable image (finishing
    /// an interrupted checkpoint from `journal`) plus every valid log record,
    /// and renames it into place. The caller holds the build lock.
    pub(crate) fn build(
        path: &Path,
        d: &Durable,
        journal: Option<&Journal>,
        log: &Log,
    ) -> Result<Self> {
        let base = journal.map_or(d.header, |j| j.target);
        let max_size = base.max_size.get();
        let len = base.len.get();
        let tmp = PathBuf::from(format!("{}.tmp{}", path.display(), sys::getpid()));
        let mode = d
            .file
            .metadata()
            .map_err(|e| Error::io("fstat", &d.path, e))?
            .permissions()
            .mode()
            & 0o666;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&tmp)
            .map_err(|e| crate::map::open_error(&tmp, true, e))?;
        // The umask may have narrowed the mode; readers need the durable file's.
        let _ = file.set_permissions(std::fs::Permissions::from_mode(mode));
        crate::map::allocate(&tmp, &file, 0, PAGE + len.max(1))?;
        let mut l = Self::map(file, &tmp, max_size, true, true)?;
        l.ensure_mapped(len)?;
        let mut hdr = [0u8; 48];
        hdr[..8].copy_from_slice(&format::LIVE_MAGIC);
        hdr[8..12].copy_from_slice(&format::VERSION.to_le_bytes());
        hdr[16..32].copy_from_slice(&base.file_id);
        hdr[32..48].copy_from_slice(&format::boot_id());
        l.res.write(0, &hdr);
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < d.header.len.get().min(len) {
            let n = (d.header.len.get().min(len) - off).min(buf.len() as u64) as usize;
            d.read_data(off, &mut buf[..n])?;
            l.res.write((PAGE + off) as usize, &buf[..n]);
            off += n as u64;
        }
        if let Some(j) = journal {
            let mut page = vec![0u8; PAGE as usize];
            for (i, &no) in j.pages.iter().enumerate() {
                j.read_page(i, &mut page)?;
                let at = no * PAGE;
                let n = (len - at).min(PAGE) as usize;
                l.res.write((PAGE + at) as usize, &page[..n]);
            }
        }
        let seq = base.checkpoint_seq.get();
        l.seqlock().store(2 * seq, Ordering::Release);
        l.len_word().store(len, Ordering::Release);
        let end = log.scan(PAGE, base.log_salt.get(), seq + 1, max_size, |r| {
            l.apply_record(r)
        })?;
        l.publish_log(end.last_seq, end.head, end.chain);
        l.res
            .atomic_u64(live::READY as usize)
            .store(1, Ordering::Release);
        std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e))?;
        l.path = path.into();
        Ok(l)
    }

    /// Whether this process may register as a waiter (see `header_writable`).
    pub(crate) fn can_register(&self) -> bool {
        self.header_writable
    }

    /// Data bytes mapped.
    pub(crate) fn mapped(&self) -> u64 {
        self.mapped
    }

    /// Maps the data area up to `len` bytes (the writer also grows the file).
    pub(crate) fn ensure_mapped(&mut self, len: u64) -> Result<()> {
        let want = len.next_multiple_of(PAGE);
        if want <= self.mapped {
            return Ok(());
        }
        if let Some(g) = &self.grow {
            let short = || {
                Error::io(
                    "mmap",
                    &self.path,
                    std::io::Error::other(format!(
                        "the live image is shorter than the {len} bytes the state holds"
                    )),
                )
            };
            g.grow_to((PAGE + want) as usize).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENXIO) {
                    short()
                } else {
                    Error::io("mmap", &self.path, e)
                }
            })?;
            let now = g.mapped() as u64 - PAGE;
            if now < want {
                return Err(short());
            }
            self.mapped = now;
            return Ok(());
        }
        if self.writable {
            // Only what lies past the file's end: an existing image is
            // allocated already, and tmpfs would walk every page again.
            let size = self
                .file
                .metadata()
                .map_err(|e| Error::io("fstat", &self.path, e))?
                .len();
            crate::map::allocate(
                &self.path,
                &self.file,
                size.max(PAGE + self.mapped),
                PAGE + want,
            )?;
        }
        let prot = if self.writable {
            Protection::ReadWrite
        } else {
            Protection::ReadOnly
        };
        self.res
            .map_file(
                (PAGE + self.mapped) as usize,
                (want - self.mapped) as usize,
                sys::fd_of(&self.file),
                PAGE + self.mapped,
                prot,
                MapKind::Shared,
                false,
                false,
            )
            .map_err(|e| Error::io("mmap", &self.path, e))?;
        self.mapped = want;
        Ok(())
    }

    /// The sequence lock word.
    pub(crate) fn seqlock(&self) -> &AtomicU64 {
        self.res.atomic_u64(live::SEQLOCK as usize)
    }

    /// The length word.
    pub(crate) fn len_word(&self) -> &AtomicU64 {
        self.res.atomic_u64(live::LEN as usize)
    }

    /// The writer's pid word.
    pub(crate) fn writer_pid(&self) -> &AtomicU32 {
        self.res.atomic_u32(live::WRITER_PID as usize)
    }

    /// The writer's durability word (see `format::live::WRITER_DURABILITY`).
    pub(crate) fn writer_durability(&self) -> &AtomicU64 {
        self.res.atomic_u64(live::WRITER_DURABILITY as usize)
    }

    /// The notification futex word.
    pub(crate) fn notify_word(&self) -> &AtomicU32 {
        self.res.atomic_u32(live::NOTIFY as usize)
    }

    /// The last applied sequence number, and whether a commit is being applied.
    pub(crate) fn applied(&self) -> (u64, bool) {
        let s = self.seqlock().load(Ordering::Acquire);
        (s / 2, s % 2 == 1)
    }

    /// Starts applying commit `seq` (the sequence lock goes odd).
    pub(crate) fn begin_apply(&self, seq: u64) {
        self.seqlock().store(2 * seq - 1, Ordering::Relaxed);
        fence(Ordering::Release);
    }

    /// Publishes commit `seq` with state length `len`: the sequence lock goes
    /// even, then the notification word moves on (see
    /// [`crate::notify::advance`]) and sleeping waiters, if any, are woken.
    /// With nobody waiting this makes no system call.
    pub(crate) fn end_apply(&self, seq: u64, len: u64) {
        self.len_word().store(len, Ordering::Relaxed);
        self.seqlock().store(2 * seq, Ordering::Release);
        if crate::notify::advance(self.notify_word()) {
            sys::futex_wake(self.notify_word(), WAKE_ALL);
        }
    }

    /// After a commit is published: sets the mtime of the durable file and
    /// of the live image to now, if the rate limit allows (see
    /// `notify::mtime`), so that `stat` tells the truth after stores.
    pub(crate) fn touch_mtime(&mut self, durable: &File) {
        if self.mtime.due() {
            mtime::touch(&[durable, &self.file]);
        }
    }

    /// Writes commit `seq`'s entry of the change ring (before the commit is
    /// published, so a woken waiter finds it). More ranges than an entry
    /// holds are widened to the one range covering them all.
    pub(crate) fn record_change(
        &self,
        seq: u64,
        ranges: &[(u64, u64)],
        old_len: u64,
        new_len: u64,
    ) {
        let base = (live::RING + (seq % live::RING_ENTRIES) * live::RING_ENTRY) as usize;
        let word = |i: usize| self.res.atomic_u64(base + 8 * i);
        word(0).store(u64::MAX, Ordering::Relaxed);
        fence(Ordering::Release);
        let put = |i: usize, (off, len): (u64, u64)| {
            word(2 + 2 * i).store(off, Ordering::Relaxed);
            word(3 + 2 * i).store(len, Ordering::Relaxed);
        };
        // A length change is a change of the bytes between the two lengths.
        let resized =
            (old_len != new_len).then(|| (old_len.min(new_len), old_len.abs_diff(new_len)));
        let n = ranges.len() + usize::from(resized.is_some());
        if n <= live::RING_RANGES {
            for (i, &r) in ranges.iter().chain(resized.iter()).enumerate() {
                put(i, r);
            }
            word(1).store(n as u64, Ordering::Relaxed);
        } else {
            let (lo, hi) = ranges
                .iter()
                .chain(resized.iter())
                .fold((u64::MAX, 0), |(lo, hi), &(o, l)| {
                    (lo.min(o), hi.max(o + l))
                });
            put(0, (lo, hi - lo));
            word(1).store(1 | 1 << 63, Ordering::Relaxed);
        }
        word(0).store(seq, Ordering::Release);
    }

    /// The change-ring entry of commit `seq`: `(ranges, widened)`, or `None`
    /// if the ring no longer (or not yet) holds it.
    pub(crate) fn read_change(&self, seq: u64) -> Option<(Vec<(u64, u64)>, bool)> {
        let base = (live::RING + (seq % live::RING_ENTRIES) * live::RING_ENTRY) as usize;
        let word = |i: usize| self.res.atomic_u64(base + 8 * i);
        if word(0).load(Ordering::Acquire) != seq {
            return None;
        }
        let n = word(1).load(Ordering::Relaxed);
        let widened = n >> 63 == 1;
        let n = ((n & !(1 << 63)) as usize).min(live::RING_RANGES);
        let ranges = (0..n)
            .map(|i| {
                (
                    word(2 + 2 * i).load(Ordering::Relaxed),
                    word(3 + 2 * i).load(Ordering::Relaxed),
                )
            })
            .collect();
        fence(Ordering::Acquire);
        (word(0).load(Ordering::Relaxed) == seq).then_some((ranges, widened))
    }

    /// Wakes every waiter (a handle that stops its own waiting thread). The
    /// word moves on first, so a thread about to sleep on the old value
    /// does not sleep (the kernel compares the value atomically). Other
    /// waiters see a spurious wake-up and sleep again; the writer moves the
    /// word on at its next commit and wakes them then as always. A
    /// read-only handle cannot bump the word; its waits poll every
    /// millisecond instead.
    pub(crate) fn wake_all(&self) {
        if self.header_writable {
            crate::notify::advance(self.notify_word());
        }
        sys::futex_wake(self.notify_word(), WAKE_ALL);
    }

    /// Publishes where the log record after commit `seq` starts, for readers
    /// that catch up on commits made while they copied (under its own
    /// sequence lock `LOG_GEN`, which only ever grows).
    pub(crate) fn publish_log(&self, seq: u64, head: u64, chain: u64) {
        let gen_word = self.res.atomic_u64(live::LOG_GEN as usize);
        // Start from an even value even if a writer died half-way through.
        let g = gen_word.load(Ordering::Relaxed) | 1;
        gen_word.store(g, Ordering::Relaxed);
        fence(Ordering::Release);
        self.res
            .atomic_u64(live::LOG_SEQ as usize)
            .store(seq, Ordering::Relaxed);
        self.res
            .atomic_u64(live::LOG_HEAD as usize)
            .store(head, Ordering::Relaxed);
        self.res
            .atomic_u64(live::LOG_CHAIN as usize)
            .store(chain, Ordering::Relaxed);
        gen_word.store(g + 1, Ordering::Release);
    }

    /// Reads the published log position: `(seq, head, chain)`, or `None` if
    /// it keeps changing or was left half-written by a dead writer (callers
    /// then scan the log from its start).
    pub(crate) fn log_position(&self) -> Option<(u64, u64, u64)> {
        let gen_word = self.res.atomic_u64(live::LOG_GEN as usize);
        for _ in 0..1000 {
            let g = gen_word.load(Ordering::Acquire);
            if g % 2 == 0 {
                let seq = self
                    .res
                    .atomic_u64(live::LOG_SEQ as usize)
                    .load(Ordering::Relaxed);
                let head = self
                    .res
                    .atomic_u64(live::LOG_HEAD as usize)
                    .load(Ordering::Relaxed);
                let chain = self
                    .res
                    .atomic_u64(live::LOG_CHAIN as usize)
                    .load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if gen_word.load(Ordering::Relaxed) == g {
                    return Some((seq, head, chain));
                }
            }
            std::thread::yield_now();
        }
        None
    }

    /// Applies one log record under the sequence lock (recovery and rebuild).
    pub(crate) fn apply_record(&mut self, r: &Record) -> Result<()> {
        // A shrinking commit's ranges reach past its new length.
        let end = r.ranges.iter().map(|&(o, l)| o + l).max().unwrap_or(0);
        self.ensure_mapped(r.new_len.max(end))?;
        self.begin_apply(r.seq);
        let mut at = 0;
        for &(off, len) in &r.ranges {
            self.res
                .write((PAGE + off) as usize, &r.data[at..at + len as usize]);
            at += len as usize;
        }
        sys::crash::point(21);
        let old_len = self.len_word().load(Ordering::Relaxed);
        self.record_change(r.seq, &r.ranges, old_len, r.new_len);
        self.end_apply(r.seq, r.new_len);
        Ok(())
    }
}
