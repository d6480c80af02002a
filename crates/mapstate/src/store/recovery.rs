//! Recovery: from the files on disk (and a live image, if one survived) to
//! a consistent store holding every commit the log has. What a writer opens
//! with (creating the state first if asked), and how a missing or stale live
//! image is rebuilt (by a writer or a reader).
//!
//! 1. Open the durable image and take the writer lock. A state that does not
//!    exist is created whole before it takes its name (see [`create`]): a
//!    kill or a power cut at any moment leaves no state or a whole one.
//! 2. Read the durable header (foreign, too new, truncated and corrupt files
//!    are refused with typed errors). If the journal is valid and leads
//!    from exactly this header: finish that checkpoint.
//! 3. Open the log (make it if it is missing).
//! 4. Under the build lock: open the live image if it belongs to this state
//!    and this boot, is complete, holds the checkpoint's commits and follows
//!    the log of the durable header's epoch (or of the one before, if a
//!    writer was killed inside a checkpoint); otherwise build a new one from
//!    the durable image, the journal and every valid log record.
//! 5. If the live image published a log position in the durable header's
//!    epoch, walk the records it already has (up to that position) reading
//!    only their range lists, to note the pages the next checkpoint must
//!    write; otherwise validate everything from the checkpoint. Then
//!    validate and replay every later record (`Step::ReplayHalf` is the
//!    middle of one).
//!
//! The writer then starts a new epoch (a checkpoint) if the live image was
//! built from the files on disk (after a reboot or a power cut, the log may
//! hold records past its valid end that an identical new record could chain
//! onto again), or the header predates epochs.
//!
//! Nothing here is proportional to the state's size but a rebuild: files
//! are only `fallocate`d past their current end.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::format::{DurableHeader, PAGE};
use crate::fs::{self, NewFile, Open};
use crate::live_image::{LiveImage, Rebuilt};
use crate::options::{self, WriterOptions};
use crate::store::checkpoint;
use crate::store::durable::Durable;
use crate::store::files::StateFiles;
use crate::store::handover::Handovers;
use crate::store::journal;
use crate::store::live::{Live, LiveAccess, Role};
use crate::store::lock::{self, BuildLock};
use crate::store::log::{Log, LogPosition};
use crate::store::pages::PageSet;
use crate::sys;

/// A recovered store, for the writer that holds the writer lock.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) files: StateFiles,
    pub(crate) durable: Durable,
    pub(crate) log: Log,
    pub(crate) live: Live,
    /// Where the live image came from.
    pub(crate) origin: LiveImage,
    /// The pages changed since the last checkpoint.
    pub(crate) changed: PageSet,
    /// The live image holds commits the log no longer has (the log was
    /// lost): every page must be checkpointed.
    pub(crate) ahead_of_log: bool,
    /// The writer must start a new epoch (a checkpoint) before it appends.
    pub(crate) new_epoch: bool,
    /// The previous writer did not close cleanly: what it left in the page
    /// cache must be synced ([`sync_leftovers`]) before this writer syncs
    /// anything of its own.
    pub(crate) leftovers: bool,
}

/// Opens the state at `path` for its writer (creating it if `opts` say so
/// and it does not exist), takes the writer lock and recovers.
pub(crate) fn open_writer(path: &Path, opts: &WriterOptions) -> Result<Recovered> {
    let wait = if opts.wait_for_lock {
        lock::Wait::ForExclusive
    } else {
        lock::Wait::No
    };
    let log_size = opts.log_size.map(check_log_size).transpose()?;
    let live_dir = opts.live_dir.as_deref();
    // Whether this open made the state (then a failure removes it again).
    let mut made = false;
    let (file, files) = loop {
        match fs::open_file(path, Open::ReadWrite) {
            Ok(f) => {
                fs::check_filesystem(&f, path, opts.allow_unsuitable_filesystem)?;
                let files = StateFiles::of_open(path, &f, live_dir)?;
                lock::take_writer_lock(&f, &files, wait)?;
                if !(opts.create && fs::file_len(&f, path)? == 0) {
                    break (f, files);
                }
                // An empty file where the state should be (made by hand, or
                // left by a version that created states in place): the new
                // state takes its place.
                made = create(path, opts, Naming::Replace)?;
            }
            Err(Error::NotFound { .. }) if opts.create => {
                // If another process names a state there first, theirs is
                // opened.
                made = create(path, opts, Naming::New)?;
            }
            Err(e) => return Err(e),
        }
    };
    // The build lock, at once: from the writer lock to the live image's own
    // lock (`Live::lock_as_writer`), a reader that checks whether the writer
    // is visible sees one of the two locks a writer holds.
    let dup = file.try_clone().map_err(|e| Error::io("dup", path, e))?;
    let build = BuildLock::take(&dup, path)?;
    let removable = made.then(|| files.clone());
    let r = recover(file, files, log_size);
    if r.is_err() {
        if let Some(files) = removable {
            // A state this open made and could not open (its live image
            // could not be made, say) goes again, under its writer lock:
            // a create that fails leaves nothing.
            for p in [files.log(), files.journal(), files.durable()] {
                let _ = fs::remove_if_present(p);
            }
        }
        lock::release_writer_lock(&dup);
    }
    drop(build);
    r
}

/// How [`create`] names the new state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// Only if nothing has the name yet.
    New,
    /// In place of what has the name (an empty file).
    Replace,
}

/// Creates a state whole before it takes its name: the durable image is
/// made unnamed (or under a temporary name), its header written and synced
/// and its writer lock taken, then it is named in one step and the
/// directory synced; the previous state's log and journal at that name, if
/// any, are then removed, and the writer lock let go (the caller opens the
/// state by its name). Nothing is done if another process names a state
/// there first. Returns whether this call named the state.
fn create(path: &Path, opts: &WriterOptions, naming: Naming) -> Result<bool> {
    let max = fs::check_size(
        "maximum size",
        opts.max_size.unwrap_or(crate::options::DEFAULT_RESERVATION),
    )?;
    if opts.len > max {
        return Err(Error::InvalidSize {
            what: "length",
            size: opts.len,
            reason: format!("larger than the maximum size of {max} bytes"),
        });
    }
    let mut new = NewFile::create(path, opts.mode & 0o777)?;
    fs::check_filesystem(new.file(), path, opts.allow_unsuitable_filesystem)?;
    let files = StateFiles::of_open(path, new.file(), opts.live_dir.as_deref())?;
    // Nobody can see the file yet, so the lock is free; it stays with the
    // file when the file is named.
    lock::take_writer_lock(new.file(), &files, lock::Wait::No)?;
    let d = Durable::initialize(
        new.file()
            .try_clone()
            .map_err(|e| Error::io("dup", path, e))?,
        path,
        opts.len,
        max,
        opts.durability,
    )?;
    drop(d);
    match naming {
        Naming::New => {
            if !new.name_new(path)? {
                return Ok(false);
            }
        }
        Naming::Replace => new.name_replacing(path)?,
    }
    fs::sync_parent(path)?;
    // The name is ours now (and locked): what a previous state left at it
    // goes. A kill before this leaves a log of another state, which
    // `open_log` replaces in a state that never checkpointed.
    for p in [files.log(), files.journal()] {
        fs::remove_if_present(p)?;
    }
    // Explicitly: a child forked meanwhile shares the descriptor until it
    // execs (see `lock::release_writer_lock`).
    lock::release_writer_lock(new.file());
    Ok(true)
}

/// The log size asked for, checked.
fn check_log_size(size: u64) -> Result<u64> {
    const MIN: u64 = 64 << 10;
    let max = crate::store::log::LOG_RESERVATION;
    match size.max(MIN).checked_next_multiple_of(PAGE) {
        Some(s) if s <= max => Ok(s),
        _ => Err(Error::InvalidSize {
            what: "log size",
            size,
            reason: format!("the log holds at most {max} bytes (4 GiB)"),
        }),
    }
}

/// Recovers the state of `files` for its writer, whose durable file is
/// `file` (the writer lock is held on it).
fn recover(file: File, files: StateFiles, log_size: Option<u64>) -> Result<Recovered> {
    let path = files.durable();
    let mut durable = Durable::open(file, path)?;
    if let Some(j) = journal::read(files.journal(), &durable.header, durable.owner)? {
        j.sync()?;
        checkpoint::finish(&mut durable, j.target, checkpoint::Pages::Journal(&j))?;
        journal::truncate(files.journal(), durable.owner);
    }
    let h = durable.header;
    let (mut log, made) = open_log(&durable, &files, log_size)?;
    let (mut live, origin) = open_live(&durable, &files, Role::Writer)?;
    let leftovers = !live.files_synced();
    // Until this writer closes cleanly (`Writer::close`).
    live.set_files_synced(false);
    let (changed, end) = replay(&h, &log, &mut live)?;
    let (now, _) = live.applied();
    log.set_position(end);
    if made {
        // A log made just now holds no record of any earlier life.
        live.set_rebuilt(false);
    }
    let new_epoch = live.rebuilt() || durable.lacks_epoch();
    Ok(Recovered {
        files,
        durable,
        log,
        live,
        origin,
        changed,
        ahead_of_log: now > end.seq,
        new_epoch,
        leftovers,
    })
}

/// Syncs the durable image, the log and their directory: the writer before
/// this one was killed (or failed a sync) and may have left writes in the
/// page cache (a header, pages, log records, a new file's name) that this
/// writer would otherwise build on as if a power cut could not take them
/// back. Not needed after a clean close (`format::live::FILES_SYNCED`), and
/// not before the new writer's first sync of its own (`Writer::open` says
/// when): until then it promises nothing a power cut could break, and a
/// reopen after a kill costs no sync.
pub(crate) fn sync_leftovers(durable: &mut Durable, log: &Log) -> Result<()> {
    durable.sync()?;
    log.sync()?;
    fs::sync_parent(&durable.path)
}

/// Opens the log of `durable` (`false`), or makes it (`true`): if it is
/// missing or empty, or
/// is the log of another state at the same name while this state has never
/// checkpointed (a state created in its place, whose creator was killed
/// before it removed the old log: that log holds nothing of this state).
/// A log it makes is `size` bytes, or sized to the state (see
/// `WriterOptions::log_size`).
fn open_log(durable: &Durable, files: &StateFiles, size: Option<u64>) -> Result<(Log, bool)> {
    let h = &durable.header;
    let fresh = h.generation.get() == 1 && h.checkpoint_seq.get() == 0;
    match Log::open_for_writing(files.log(), &h.file_id, durable.owner) {
        Ok(Some(log)) => return Ok((log, false)),
        Ok(None) => {}
        Err(Error::Corrupt { .. } | Error::Foreign { .. } | Error::Truncated { .. }) if fresh => {}
        Err(e) => return Err(e),
    }
    let size = size.unwrap_or_else(|| options::initial_log_size(h.len.get()));
    let log = Log::create(files.log(), &h.file_id, size, durable.owner)?;
    fs::sync_parent(files.log())?;
    Ok((log, true))
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
    // image published, if it is in this header's epoch, then validate and
    // replay from there.
    let start = LogPosition::start(h);
    let from = match live.log_position() {
        Some(p)
            if p.epoch == h.epoch
                && p.seq >= start.seq
                && p.seq <= applied
                && log.walk_ranges(PAGE, p.head, start.seq + 1, p.seq, |off, len| {
                    changed.mark(off, len, max_size);
                }) =>
        {
            p
        }
        _ => {
            changed.clear();
            start
        }
    };
    let end = log.scan(from, max_size, |r| {
        for (off, len) in r.all_ranges() {
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

/// Opens the live image of `d`: the one in place if it passes every
/// identity check, else a new one built from the files on disk, put in
/// place if this process may (the writer, which holds the build lock; a
/// reader that is the owner or root, with no writer alive), else kept
/// private (a reader that is not the owner never publishes a live image the
/// owner would trust).
pub(crate) fn open_live(d: &Durable, files: &StateFiles, role: Role) -> Result<(Live, LiveImage)> {
    match role {
        Role::Writer => {
            // The caller holds the build lock.
            let (live, origin) = open_or_build_shared(d, files, Role::Writer)?;
            // Held for as long as the writer lives: readers that see the
            // writer lock taken but not this one know the writer's live
            // image is not the one they map.
            live.lock_as_writer();
            Ok((live, origin))
        }
        Role::Reader => open_live_for_reader(d, files),
    }
}

/// A reader's live image (see [`open_live`]).
fn open_live_for_reader(d: &Durable, files: &StateFiles) -> Result<(Live, LiveImage)> {
    // A live image has its name only once whole: the one in place is
    // checked without a lock.
    let base = base_header(d, files)?;
    let why = match usable_while_writer_opens(d, files)? {
        Ok(l) => return Ok((l, LiveImage::Kept)),
        Err(why) => why,
    };
    let rw = if d.owner.is_us() {
        fs::open_file(&d.path, Open::ReadWrite).ok()
    } else {
        None
    };
    let Some(rw) = rw else {
        let live = build(files, d, &base, Publish::Private)?;
        return Ok((live, LiveImage::Private(why)));
    };
    let _lock = BuildLock::take(&rw, &d.path)?;
    if lock::writer_lock_held(&d.file, &d.path)? {
        return Err(Error::WriterNotVisible {
            path: d.path.clone(),
            why: "a writer opened the state while this reader meant to build its live image: \
                  open the reader again"
                .into(),
        });
    }
    let (built, origin) = open_or_build_shared(d, files, Role::Writer)?;
    drop(built);
    // Readers of the image it replaced (retired) must look again.
    if origin != LiveImage::Kept {
        Handovers::bump(&rw, &d.path)?;
    }
    let base = base_header(d, files)?;
    let live = Live::open_existing(files.live(), &base, d.owner, Role::Reader)?.map_err(|why| {
        Error::Corrupt {
            path: files.live().into(),
            what: format!("the live image just built does not validate ({why})"),
        }
    })?;
    Ok((live, origin))
}

/// The live image in place, for a reader; `Err(why)` if it is not usable
/// and no writer is alive. With a writer alive, a live image that is not
/// usable is waited for while the writer builds (it holds the build lock),
/// and then re-checked a few times (the durable header read may predate the
/// writer's last checkpoint); if it still is not usable, the writer's live
/// image is not the one in place here (another mount namespace's, say):
/// `Error::WriterNotVisible`. A reader never builds over a live writer.
fn usable_while_writer_opens(
    d: &Durable,
    files: &StateFiles,
) -> Result<std::result::Result<Live, Rebuilt>> {
    let mut backoff = Backoff::new();
    let mut tries = 0;
    loop {
        let base = base_header(&Durable::reread(d)?, files)?;
        let why = match Live::open_existing(files.live(), &base, d.owner, Role::Reader)? {
            Ok(l) => return Ok(Ok(l)),
            Err(why) => why,
        };
        if !lock::writer_lock_held(&d.file, &d.path)? {
            return Ok(Err(why));
        }
        if !lock::build_lock_held(&d.file, &d.path)? {
            tries += 1;
            if tries > 5 {
                return Err(Error::WriterNotVisible {
                    path: d.path.clone(),
                    why: format!(
                        "a writer has the state open, but the live image here is not usable \
                         ({why})"
                    ),
                });
            }
        }
        backoff.sleep();
    }
}

/// The header the live image must follow: the durable header, or the
/// target of a journal that will finish an interrupted checkpoint.
fn base_header(d: &Durable, files: &StateFiles) -> Result<DurableHeader> {
    let journal = journal::read(files.journal(), &d.header, d.owner)?;
    Ok(journal.map_or(d.header, |j| j.target))
}

/// Under the build lock: the live image in place if it passes, else one
/// built and put in place.
fn open_or_build_shared(d: &Durable, files: &StateFiles, role: Role) -> Result<(Live, LiveImage)> {
    let base = base_header(d, files)?;
    match Live::open_existing(files.live(), &base, d.owner, role)? {
        Ok(l) => Ok((l, LiveImage::Kept)),
        Err(why) => {
            files.prepare_live_dir(d.owner)?;
            let l = build(files, d, &base, Publish::Shared)?;
            Ok((l, LiveImage::Rebuilt(why)))
        }
    }
}

/// Whether a built live image is put in place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// Renamed into place, for every process (the caller holds the build
    /// lock).
    Shared,
    /// In memory, for this reader alone.
    Private,
}

/// Builds a fresh live image following `base` (the durable header, or the
/// target of a journal that finishes an interrupted checkpoint) from the
/// durable image, the journal's pages and every valid log record.
fn build(files: &StateFiles, d: &Durable, base: &DurableHeader, publish: Publish) -> Result<Live> {
    let path = files.live();
    let journal = journal::read(files.journal(), &d.header, d.owner)?;
    let log = match Log::open_for_reading(files.log(), &base.file_id, d.owner) {
        Ok(l) => Some(l),
        // No log (lost, or a state whose creator was killed before making
        // it): the durable image alone.
        Err(Error::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let max_size = base.max_size.get();
    let len = base.len.get();
    let (mut new, file) = match publish {
        Publish::Shared => {
            let new = NewFile::create(path, d.owner.mode & 0o666)?;
            d.owner.give(new.file(), path, 0o666)?;
            let dup = new
                .file()
                .try_clone()
                .map_err(|e| Error::io("dup", path, e))?;
            (Some(new), dup)
        }
        Publish::Private => (
            None,
            sys::memfd("mapstate-private-live").map_err(|e| Error::io("memfd_create", path, e))?,
        ),
    };
    fs::allocate(path, &file, 0, PAGE + len.max(1))?;
    let mut l = Live::map(file, path, max_size, LiveAccess::Writer)?;
    l.map_data(len)?;
    l.write_identity(&base.file_id);
    // The new image reads as zeros: only what the durable file holds data
    // for is copied (a new or sparse state builds in no time).
    let mut buf = vec![0u8; 1 << 20];
    for (start, n) in d.data_ranges(d.header.len.get().min(len))? {
        let mut off = start;
        while off < start + n {
            let k = (start + n - off).min(buf.len() as u64) as usize;
            d.read_data(off, &mut buf[..k])?;
            l.write(off, &buf[..k]);
            off += k as u64;
        }
    }
    if let Some(j) = &journal {
        j.for_each_run(0..j.pages.len(), |at, bytes| {
            l.write(at, bytes);
            Ok(())
        })?;
    }
    let start = LogPosition::start(base);
    l.seqlock().end_write(2 * start.seq);
    l.len_word().store(len, Ordering::Release);
    let end = match &log {
        Some(log) => log.scan(start, max_size, |r| l.apply_record(r))?,
        None => start,
    };
    l.publish_log(end);
    l.set_rebuilt(true);
    l.set_ready();
    if let Some(new) = &mut new {
        new.name_replacing(path)?;
        l.file = new.reopen(path)?;
    }
    Ok(l)
}
