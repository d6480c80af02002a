//! Recovery: from the files on disk (and a live image, if one survived) to
//! a consistent store holding every commit the log has. What `Writer`
//! opens with, and how a missing or stale live image is rebuilt (by the
//! writer or a reader).
//!
//! 1. Create the durable image if asked and the file is empty; else read
//!    its header (foreign, too new, truncated and corrupt files are refused
//!    with typed errors).
//! 2. If the journal is valid and leads one generation on: finish that
//!    checkpoint.
//! 3. Open the log (create it if missing).
//! 4. Under the build lock: open the live image if it belongs to this
//!    state and this boot, is marked ready, and is not older than the
//!    checkpoint; otherwise build a new one from the durable image, the
//!    journal and every valid log record, and rename it into place.
//! 5. Walk the records the live image already has (up to the log position
//!    it published) reading only their range lists, to note the pages the
//!    next checkpoint must write; then validate and replay every later
//!    record (`Step::ReplayHalf` is the middle of one). If the published
//!    position does not match the log, validate everything from the
//!    checkpoint instead.
//!
//! Nothing here is proportional to the state's size but a rebuild: files
//! are only `fallocate`d past their current end.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::format::{DurableHeader, PAGE};
use crate::fs;
use crate::options::WriterOptions;
use crate::store::checkpoint;
use crate::store::durable::Durable;
use crate::store::files::StateFiles;
use crate::store::journal::{self, Journal};
use crate::store::live::{Live, LiveAccess, Role};
use crate::store::lock::BuildLock;
use crate::store::log::{Log, LogPosition};
use crate::store::pages::PageSet;
use crate::sys;

/// A recovered store, for the writer that holds the writer lock.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) durable: Durable,
    pub(crate) log: Log,
    pub(crate) live: Live,
    /// The pages changed since the last checkpoint.
    pub(crate) changed: PageSet,
    /// The live image holds commits the log no longer has (the log was
    /// lost): they must be checkpointed before anything else.
    pub(crate) ahead_of_log: bool,
}

/// Recovers the state of `files` for its writer, whose durable file is
/// `file` (the writer lock is held on it).
pub(crate) fn recover(file: File, files: &StateFiles, opts: &WriterOptions) -> Result<Recovered> {
    let path = files.durable();
    let mut durable = if fs::file_len(&file, path)? == 0 && opts.create {
        create(file, files, opts)?
    } else {
        Durable::open(file, path)?
    };
    if let Some(j) = journal::read(files.journal(), &durable.header)? {
        checkpoint::finish(&mut durable, &j)?;
    }
    let h = durable.header;
    let created_log = !files.log().exists();
    let mut log = Log::open_for_writing(files.log(), &h.file_id, opts.log_size)?;
    if created_log {
        fs::sync_parent(path)?;
    }
    let mut live = open_live(&durable, files, Role::Writer)?;
    let (changed, end) = replay(&h, &log, &mut live)?;
    let (now, _) = live.applied();
    log.set_position(end);
    Ok(Recovered {
        durable,
        log,
        live,
        changed,
        ahead_of_log: now > end.seq,
    })
}

/// Writes the first header of a new state into the empty `file`.
fn create(file: File, files: &StateFiles, opts: &WriterOptions) -> Result<Durable> {
    let path = files.durable();
    let max = fs::check_size("maximum size", opts.max_size)?;
    if opts.len > max {
        return Err(Error::InvalidSize {
            what: "length",
            size: opts.len,
            reason: format!("larger than the maximum size of {max} bytes"),
        });
    }
    for p in [files.log(), files.journal()] {
        if let Err(e) = std::fs::remove_file(p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io("unlink", p, e));
            }
        }
    }
    let d = Durable::initialize(file, path, opts.len, max, opts.durability)?;
    fs::sync_parent(path)?;
    Ok(d)
}

/// Replays into `live` the records of the log it lacks, and notes every
/// page the log touched since the checkpoint of `h`. Returns those pages
/// and the position after the log's last valid record.
fn replay(h: &DurableHeader, log: &Log, live: &mut Live) -> Result<(PageSet, LogPosition)> {
    let max_size = h.max_size.get();
    let (applied, _) = live.applied();
    let mut changed = PageSet::default();
    // Records the live image already has were validated when they were
    // written and are only needed for their ranges (the pages the next
    // checkpoint writes): walk them cheaply up to the position the live
    // image published, then validate and replay from there.
    let first = h.checkpoint_seq.get() + 1;
    let from = match live.log_position() {
        Some(p)
            if p.seq >= first - 1
                && p.seq <= applied
                && log.walk_ranges(PAGE, p.head, first, p.seq, |off, len| {
                    changed.mark(off, len, max_size);
                }) =>
        {
            p
        }
        _ => {
            changed.clear();
            LogPosition::start(h.checkpoint_seq.get(), h.log_salt.get())
        }
    };
    let end = log.scan(from, max_size, |r| {
        for &(off, len) in &r.ranges {
            changed.mark(off, len, max_size);
        }
        if r.seq > applied {
            live.apply_record(r)
        } else {
            Ok(())
        }
    })?;
    let (now, odd) = live.applied();
    if odd || now < end.seq {
        return Err(Error::Corrupt {
            path: live.path.clone(),
            what: format!(
                "the live image is at commit {now} but the log ends at {}",
                end.seq
            ),
        });
    }
    Ok((changed, end))
}

/// Opens the live image of `d`, building it if missing or stale; for a
/// reader as it may map it.
pub(crate) fn open_live(d: &Durable, files: &StateFiles, role: Role) -> Result<Live> {
    let _lock = BuildLock::take(&d.file, &d.path)?;
    let journal = journal::read(files.journal(), &d.header)?;
    let base = journal.as_ref().map_or(d.header, |j| j.target);
    let max = base.max_size.get();
    if let Some(l) = Live::open_existing(files.live(), &base.file_id, max, role)? {
        if l.applied().0 >= base.checkpoint_seq.get() {
            return Ok(l);
        }
    }
    let log = Log::open_for_reading(files.log(), &base.file_id)?;
    let built = build(files, d, journal.as_ref(), &log)?;
    if role == Role::Writer {
        return Ok(built);
    }
    drop(built);
    Live::open_existing(files.live(), &base.file_id, max, Role::Reader)?.ok_or_else(|| {
        Error::Corrupt {
            path: files.live().into(),
            what: "the live image just built does not validate".into(),
        }
    })
}

/// Builds a fresh live image from the durable image (finishing an
/// interrupted checkpoint from `journal`) plus every valid log record,
/// and renames it into place. The caller holds the build lock.
fn build(files: &StateFiles, d: &Durable, journal: Option<&Journal>, log: &Log) -> Result<Live> {
    let path = files.live();
    let base = journal.map_or(d.header, |j| j.target);
    let max_size = base.max_size.get();
    let len = base.len.get();
    let tmp = PathBuf::from(format!("{}.tmp{}", path.display(), sys::getpid()));
    let mode = fs::file_mode(&d.file, &d.path)? & 0o666;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&tmp)
        .map_err(|e| fs::open_error(&tmp, true, e))?;
    // The umask may have narrowed the mode; readers need the durable file's.
    let _ = file.set_permissions(std::fs::Permissions::from_mode(mode));
    fs::allocate(&tmp, &file, 0, PAGE + len.max(1))?;
    let mut l = Live::map(file, &tmp, max_size, LiveAccess::Writer)?;
    l.map_data(len)?;
    l.write_identity(&base.file_id);
    let mut buf = vec![0u8; 1 << 20];
    let durable_len = d.header.len.get().min(len);
    let mut off = 0;
    while off < durable_len {
        let n = (durable_len - off).min(buf.len() as u64) as usize;
        d.read_data(off, &mut buf[..n])?;
        l.write(off, &buf[..n]);
        off += n as u64;
    }
    if let Some(j) = journal {
        j.for_each_page(|at, bytes| {
            l.write(at, bytes);
            Ok(())
        })?;
    }
    let seq = base.checkpoint_seq.get();
    l.seqlock().end_write(2 * seq);
    l.len_word().store(len, Ordering::Release);
    let end = log.scan(
        LogPosition::start(seq, base.log_salt.get()),
        max_size,
        |r| l.apply_record(r),
    )?;
    l.publish_log(end);
    l.set_ready();
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e))?;
    l.path = path.into();
    Ok(l)
}
