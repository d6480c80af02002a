//! The subcommands that work on one state: `create`, `info`, `verify`,
//! `recover`, `get`, `set`, `dump` and `watch`. Each goes through the
//! library's public API only: the same locks, commit and recovery paths as
//! any program.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use mapstate::{Durability, Error, Event, LiveImage, Reader, Rebuilt, StateFiles, Writer};
use serde_json::{Value, json};

use crate::util::{
    self, CmdResult, EXIT_FAILURE, EXIT_OK, EXIT_VIOLATION, Failure, WriterLock, human,
    human_duration,
};

/// `create`: a new state of `size` bytes (zeros).
pub(crate) fn create(
    path: &Path,
    size: u64,
    max_size: Option<u64>,
    durability: Durability,
    json: bool,
) -> CmdResult {
    let max = max_size.unwrap_or(mapstate::DEFAULT_RESERVATION.max(size));
    // Refuse to touch an existing file: `create` never reinitializes a state.
    // (The library makes the state whole under a temporary name or none,
    // and names it only if nothing has the name.)
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Ok(_) => {
            return Err(Failure::new(
                EXIT_FAILURE,
                format!(
                    "{} already exists: `mapstate info {}` shows it; `mapstate rm {}` deletes it \
                     (and its live image) to start over",
                    path.display(),
                    path.display(),
                    path.display()
                ),
            ));
        }
        Err(e) => {
            return Err(Error::from_open(path, e).into());
        }
    }
    let opts = Writer::options()
        .create(true)
        .len(size)
        .max_size(max)
        .durability(durability);
    // The library makes the state whole before it names it: a failure
    // leaves nothing to remove (and what has the name then is another
    // process's state).
    let spin = util::spinner(
        &format!("creating {}: allocating {}", path.display(), human(size)),
        !json,
    );
    let w = opts.open(path)?;
    spin.finish_and_clear();
    let (len, max) = (w.len(), w.max_size());
    w.close()?;
    let files = files(path);
    if json {
        println!(
            "{}",
            json!({
                "path": path, "len": len, "max_size": max,
                "durability": util::durability_name(durability), "files": files_json(&files),
            })
        );
    } else {
        println!(
            "created {}: {} of zeros, may grow to {}, durability {}",
            path.display(),
            human(len),
            human(max),
            util::durability_name(durability)
        );
        print_files(&files);
    }
    Ok(EXIT_OK)
}

/// Turns an `open(2)` error of the CLI's own into the library's typed error.
trait FromOpen {
    fn from_open(path: &Path, e: std::io::Error) -> Error;
}

impl FromOpen for Error {
    fn from_open(path: &Path, e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { path: path.into() },
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                Error::PermissionDenied {
                    path: path.into(),
                    write: true,
                    source: e,
                }
            }
            _ => Error::Io {
                op: "open",
                path: path.into(),
                source: e,
            },
        }
    }
}

/// One file of a state: its role, path and size.
struct StateFile {
    role: &'static str,
    path: PathBuf,
    len: u64,
    on_disk: u64,
}

/// The files of the state at `path` that exist (`StateFiles` names them).
fn files(path: &Path) -> Vec<StateFile> {
    let Ok(names) = StateFiles::of(path, None) else {
        return Vec::new();
    };
    let roles = [
        ("durable image", names.durable()),
        ("redo log", names.log()),
        ("journal", names.journal()),
        ("live image", names.live()),
    ];
    roles
        .into_iter()
        .filter_map(|(role, p)| {
            let md = std::fs::metadata(p).ok()?;
            Some(StateFile {
                role,
                path: p.into(),
                len: md.len(),
                on_disk: md.blocks() * 512,
            })
        })
        .collect()
}

fn files_json(files: &[StateFile]) -> Value {
    Value::Array(
        files
            .iter()
            .map(|f| json!({"role": f.role, "path": f.path, "len": f.len, "allocated": f.on_disk}))
            .collect(),
    )
}

fn print_files(files: &[StateFile]) {
    for (i, f) in files.iter().enumerate() {
        println!(
            "  {:<7}{:>9}  {:<14}{}",
            if i == 0 { "files" } else { "" },
            human(f.len),
            f.role,
            f.path.display()
        );
    }
}

fn writer_json(l: WriterLock) -> Value {
    match l {
        WriterLock::Free => json!({"open": false}),
        WriterLock::Held(pid) => json!({"open": true, "pid": pid}),
        WriterLock::Unknown => json!({"open": null}),
    }
}

fn writer_text(l: WriterLock) -> String {
    match l {
        WriterLock::Free => "none (no process has it open for writing)".into(),
        WriterLock::Held(Some(pid)) => format!("pid {pid} has it open"),
        WriterLock::Held(None) => "a process has it open (it has not recorded its pid yet)".into(),
        WriterLock::Unknown => "unknown (the kernel's lock query failed)".into(),
    }
}

/// `info`: length, last commit, durability, checkpoint, log, writer, live
/// image, `MAP_SYNC` support and files.
pub(crate) fn info(path: &Path, json: bool) -> CmdResult {
    let r = Reader::open(path)?;
    let (len, seq) = (r.len(), r.seq());
    let durability = r.durability()?;
    let writer_durability = r.writer_durability()?;
    let checkpoint = r.checkpoint_seq()?;
    let log_size = r.log_size()?;
    let log_used = r.log_bytes();
    let lock = util::writer_of(&r);
    let live = r.live_path().to_path_buf();
    let origin = r.live_image();
    drop(r);
    let map_sync = util::map_sync_report(path);
    let files = files(path);
    if json {
        println!(
            "{}",
            json!({"path": path, "len": len, "seq": seq,
                   "durability": util::durability_name(durability),
                   "writer_durability": writer_durability.map(util::durability_name),
                   "checkpoint_seq": checkpoint,
                   "log": {"size": log_size, "used": log_used},
                   "writer": writer_json(lock),
                   "live_image": {"path": live, "origin": origin.name(),
                                  "rebuilt_because": origin.rebuilt().map(|w| w.name())},
                   "map_sync": map_sync.to_json(), "files": files_json(&files)})
        );
    } else {
        println!("{}", path.display());
        println!("  length {} ({len} bytes)", human(len));
        println!("  commit {seq} (sequence number of the last commit)");
        println!(
            "  checkpoint commit {checkpoint} (the durable image on disk holds every commit up \
             to it)"
        );
        println!(
            "  durability {} (chosen at creation, stored in the durable header)",
            util::durability_name(durability)
        );
        if let Some(d) = writer_durability {
            println!(
                "  the writer commits with {} (the durability it opened the state with)",
                util::durability_name(d)
            );
        }
        println!(
            "  log {} used of {} (records since the last checkpoint; a full log \
             checkpoints)",
            log_used.map_or_else(|| "?".into(), human),
            human(log_size)
        );
        println!("  writer {}", writer_text(lock));
        println!("  live image {}", live.display());
        println!(
            "{}",
            util::wrap("    ", &format!("{origin} (as this reader opened it)"), 80)
        );
        println!("  MAP_SYNC {}", map_sync.text);
        print_files(&files);
    }
    Ok(EXIT_OK)
}

/// Bytes compared per step of `verify` (and per tick of its progress bar).
const CHUNK: u64 = 1 << 20;

/// `verify`: open read-only, read every byte of the state, rebuild it from
/// the files on disk (durable image, journal, log: every checksum the
/// library checks) and compare.
#[allow(clippy::too_many_lines)] // one linear check, reported step by step
pub(crate) fn verify(path: &Path, json: bool) -> CmdResult {
    let fail = |e: Error| -> Failure {
        if util::is_damage(&e) {
            Failure::new(EXIT_VIOLATION, format!("verify failed: {e}"))
        } else {
            e.into()
        }
    };
    let live = Reader::open(path).map_err(fail)?;
    let (seq, len) = (live.seq(), live.len());
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let lock = util::writer_of(&live);
    match live.live_image() {
        LiveImage::Kept => {}
        LiveImage::Rebuilt(Rebuilt::Missing) => notes.push(
            "there was no live image (a new state or the first open since boot): \
             built one from the files on disk"
                .into(),
        ),
        origin => notes.push(format!("live image {origin}")),
    }
    // The state as the files on disk hold it, rebuilt in a scratch live
    // directory (on tmpfs when there is one): this validates the durable
    // header, an interrupted checkpoint's journal and the log's chain.
    let mut rebuilt = if let WriterLock::Held(pid) = lock {
        notes.push(format!(
            "a writer{} has the state open: checked the live image only; \
             stop it and verify again to check the files on disk too",
            pid.map_or_else(String::new, |p| format!(" (pid {p})"))
        ));
        None
    } else {
        let scratch = scratch_dir().map_err(|e| Failure::new(EXIT_FAILURE, e))?;
        let opts = Writer::options().live_dir(scratch.path());
        let spin = util::spinner("verify: rebuilding the state from the files on disk", !json);
        let r = opts.reader().open(path).map_err(fail)?;
        spin.finish_and_clear();
        Some((scratch, r))
    };
    let pb = util::bar(len, "verify", true, !json);
    let mut buf_live = vec![0u8; CHUNK.min(len) as usize];
    let mut buf_disk = buf_live.clone();
    let mut moved = false;
    let mut rebuilt_seq = None;
    if let Some((_, disk)) = &rebuilt {
        let (dseq, dlen) = (disk.seq(), disk.len());
        rebuilt_seq = Some(dseq);
        if dseq < seq {
            problems.push(format!(
                "the live image is at commit {seq}, but the durable image and the log on disk \
                 only reach commit {dseq}: commits {}..={seq} would be lost by an OS crash \
                 (`mapstate recover` checkpoints them)",
                dseq + 1
            ));
        } else if dseq > seq {
            notes.push(format!(
                "the log holds {} commit(s) the live image has not applied yet (a writer died \
                 inside a commit): the next writer to open it, or `mapstate recover`, applies them",
                dseq - seq
            ));
        } else if dlen != len {
            problems.push(format!(
                "commit {seq}: the live image is {len} bytes long but the files on disk say {dlen}"
            ));
        }
    }
    let compare = rebuilt_seq == Some(seq) && problems.is_empty();
    let mut off = 0;
    while off < len {
        let n = (len - off).min(CHUNK) as usize;
        let got = live.read_at(off, &mut buf_live[..n]).map_err(fail)?;
        if got != seq {
            moved = true;
        }
        if compare && !moved {
            let disk = &mut rebuilt.as_mut().expect("compare implies rebuilt").1;
            disk.read_at(off, &mut buf_disk[..n]).map_err(fail)?;
            if let Some(i) = buf_live[..n]
                .iter()
                .zip(&buf_disk[..n])
                .position(|(a, b)| a != b)
            {
                problems.push(format!(
                    "commit {seq}: the live image differs from the files on disk at offset {} \
                     ({:#04x} in memory, {:#04x} on disk)",
                    off + i as u64,
                    buf_live[i],
                    buf_disk[i]
                ));
                break;
            }
        }
        off += n as u64;
        pb.set_position(off);
    }
    pb.finish_and_clear();
    if moved {
        notes.push(format!(
            "the state changed during the check (a writer committed after commit {seq}): \
             each part read was consistent, but the comparison with the files on disk is incomplete"
        ));
    }
    let compared = compare && !moved && problems.is_empty();
    let ok = problems.is_empty();
    if json {
        println!(
            "{}",
            json!({"path": path, "ok": ok, "seq": seq, "len": len, "rebuilt_seq": rebuilt_seq,
                   "live_image": live.live_image().name(),
                   "compared": compared, "problems": problems, "notes": notes})
        );
    } else {
        println!("{}: {}", path.display(), if ok { "ok" } else { "DAMAGED" });
        println!("  commit {seq}, length {}", human(len));
        println!("  headers and checksums: valid (the library opened every file it needs)");
        if let Some(d) = rebuilt_seq {
            println!("  rebuilt from the files on disk: commit {d}");
        }
        if compared {
            println!(
                "  every byte of the live image equals the state rebuilt from disk ({})",
                human(len)
            );
        } else if ok {
            println!(
                "  every byte read back as one committed state ({})",
                human(len)
            );
        }
        for p in &problems {
            println!("{}", util::wrap("  problem: ", p, 80));
        }
        for n in &notes {
            println!("{}", util::wrap("  note: ", n, 80));
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_VIOLATION })
}

/// A scratch directory for a rebuilt live image: on `/dev/shm` when it is
/// writable, else the temp dir.
fn scratch_dir() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("mapstate-verify-")
        .tempdir_in("/dev/shm")
        .or_else(|_| {
            tempfile::Builder::new()
                .prefix("mapstate-verify-")
                .tempdir()
        })
        .map_err(|e| format!("cannot create a scratch directory: {e}"))
}

/// Opens a writer, saying whose lock is in the way; with `wait`, waits for it.
fn open_writer(path: &Path, wait: bool, json: bool) -> Result<Writer, Failure> {
    match Writer::open(path) {
        Err(Error::Locked {
            pid,
            other_pid_namespace,
            ..
        }) if wait => {
            if !json {
                let holder = match (pid, other_pid_namespace) {
                    (Some(p), _) => format!(" (held by pid {p})"),
                    (None, true) => " (held by a process in another pid namespace)".to_owned(),
                    (None, false) => String::new(),
                };
                eprintln!(
                    "waiting for the writer lock of {}{holder} ...",
                    path.display()
                );
            }
            Ok(Writer::options().wait_for_lock(true).open(path)?)
        }
        // The library's message says who holds the lock (a pid, or a
        // process in another pid namespace) and names --wait-for-lock.
        r => Ok(r?),
    }
}

/// `rm`: deletes the state's files under its writer lock (a writer that
/// has it open is refused, or waited for).
pub(crate) fn rm(path: &Path, wait: bool, json: bool) -> CmdResult {
    let w = open_writer(path, wait, json)?;
    let files = w.files().clone();
    w.remove()?;
    if json {
        println!(
            "{}",
            json!({"path": path, "removed": [files.durable(), files.log(), files.journal(), files.live()]})
        );
    } else {
        println!(
            "removed {} (its log, journal and live image {} too)",
            path.display(),
            files.live().display()
        );
    }
    Ok(EXIT_OK)
}

/// `backup`: a copy of one commit's state, as a new state at `dest`.
pub(crate) fn backup(path: &Path, dest: &Path, json: bool) -> CmdResult {
    let t = Instant::now();
    let r = Reader::open(path)?;
    let (seq, len) = r.backup(dest)?;
    let took = t.elapsed();
    if json {
        println!(
            "{}",
            json!({"path": path, "dest": dest, "seq": seq, "len": len,
                   "took_us": took.as_micros() as u64})
        );
    } else {
        println!(
            "backed up {} as of commit {seq} ({}) to {} in {}",
            path.display(),
            human(len),
            dest.display(),
            human_duration(took)
        );
    }
    Ok(EXIT_OK)
}

/// `restore`: the backup at `backup` in place of the state at `path`.
pub(crate) fn restore(backup: &Path, path: &Path, wait: bool, json: bool) -> CmdResult {
    let opts = Writer::options();
    let w = match opts.restore(backup, path) {
        Err(Error::Locked { .. }) if wait => {
            if !json {
                eprintln!("waiting for the writer lock of {} ...", path.display());
            }
            opts.wait_for_lock(true).restore(backup, path)?
        }
        r => r?,
    };
    let (seq, len) = (w.seq(), w.len());
    w.close()?;
    if json {
        println!(
            "{}",
            json!({"path": path, "backup": backup, "seq": seq, "len": len})
        );
    } else {
        println!(
            "restored {} from {}: commit {seq}, {}",
            path.display(),
            backup.display(),
            human(len)
        );
    }
    Ok(EXIT_OK)
}

/// `recover`: open as a writer (which is recovery), report, checkpoint, close.
pub(crate) fn recover(path: &Path, wait: bool, json: bool) -> CmdResult {
    let t = Instant::now();
    let w = open_writer(path, wait, json)?;
    let open_time = t.elapsed();
    let (seq, len, log, origin) = (w.seq(), w.len(), w.log_bytes(), w.live_image());
    let t = Instant::now();
    w.close()?;
    let close_time = t.elapsed();
    if json {
        println!(
            "{}",
            json!({"path": path, "seq": seq, "len": len, "log_bytes": log,
                   "live_image": origin.name(),
                   "live_image_rebuilt_because": origin.rebuilt().map(|w| w.name()),
                   "open_us": open_time.as_micros() as u64,
                   "checkpoint_us": close_time.as_micros() as u64})
        );
    } else {
        println!(
            "recovered {} in {}",
            path.display(),
            human_duration(open_time)
        );
        println!(
            "  commit {seq} (the last commit, now in the live image), length {}",
            human(len)
        );
        if origin == LiveImage::Kept {
            println!("  live image: kept; log records it lacked, if any, were replayed into it");
        } else {
            println!("{}", util::wrap("  live image: ", &origin.to_string(), 80));
        }
        println!("  log: {} of records since the last checkpoint", human(log));
        println!(
            "checkpointed in {}: the durable image holds commit {seq}; the log is empty",
            human_duration(close_time)
        );
    }
    Ok(EXIT_OK)
}

/// Checks that `offset..offset + len` lies inside a state of `size` bytes.
fn check_range(offset: u64, len: u64, size: u64) -> Result<(), Failure> {
    let what = match offset.checked_add(len) {
        Some(end) if end <= size => return Ok(()),
        Some(end) => format!("the range {offset}..{end} is past the end of the state"),
        None => format!("offset {offset} plus length {len} is past the end of the state"),
    };
    Err(Failure::new(
        EXIT_FAILURE,
        format!(
            "{what}, which is {size} bytes long: use an offset and length inside it \
             (`mapstate info` shows the length)"
        ),
    ))
}

/// `get`: bytes of one committed state.
pub(crate) fn get(path: &Path, offset: u64, len: u64, hex: bool, json: bool) -> CmdResult {
    let r = Reader::open(path)?;
    check_range(offset, len, r.len())?;
    let mut buf = vec![0u8; len as usize];
    let seq = r.read_at(offset, &mut buf)?;
    let mut out = std::io::stdout().lock();
    let res = if json {
        writeln!(
            out,
            "{}",
            json!({"path": path, "offset": offset, "len": len, "seq": seq, "hex": util::to_hex(&buf)})
        )
    } else if hex {
        writeln!(out, "{}", util::to_hex(&buf))
    } else if std::io::stdout().is_terminal() {
        util::hexdump(offset, &buf, &mut out)
    } else {
        out.write_all(&buf)
    };
    finish_output(res.and_then(|()| out.flush()))
}

/// A write to stdout that failed because the reader went away (`| head`)
/// is not an error.
fn finish_output(r: std::io::Result<()>) -> CmdResult {
    match r {
        Ok(()) => Ok(EXIT_OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
        Err(e) => Err(Failure::new(
            EXIT_FAILURE,
            format!("writing to stdout: {e}"),
        )),
    }
}

/// `set`: one transaction through the writer lock and the commit path.
pub(crate) fn set(
    path: &Path,
    offset: u64,
    data: &[u8],
    grow: bool,
    wait: bool,
    json: bool,
) -> CmdResult {
    let mut w = open_writer(path, wait, json)?;
    let end = offset.checked_add(data.len() as u64);
    let old_len = w.len();
    let mut t = w.begin();
    let refuse = |why: String| {
        Err(Failure::new(
            EXIT_FAILURE,
            format!(
                "cannot write {} bytes at offset {offset}: {why}; nothing was changed",
                data.len()
            ),
        ))
    };
    match end {
        Some(end) if end > t.len() && grow => t.set_len(end)?,
        Some(end) if end <= t.len() => {}
        Some(_) => {
            return refuse(format!(
                "the state is {} bytes long (pass --grow to lengthen it, up to its \
                 maximum size)",
                t.len()
            ));
        }
        None => return refuse("that is past the largest offset there is".into()),
    }
    t.write_at(offset, data)?;
    let seq = t.commit()?;
    let new_len = w.len();
    w.close()?;
    if json {
        println!(
            "{}",
            json!({"path": path, "offset": offset, "len": data.len(), "seq": seq,
                   "state_len": new_len})
        );
    } else {
        println!(
            "wrote {} at offset {offset} of {}: commit {seq}{} (checkpointed: on disk)",
            human(data.len() as u64),
            path.display(),
            if new_len == old_len {
                String::new()
            } else {
                format!(", length {}", util::human_change(old_len, new_len))
            }
        );
    }
    Ok(EXIT_OK)
}

/// `dump`: an xxd-like dump of a range of one committed state.
pub(crate) fn dump(path: &Path, offset: u64, len: Option<u64>, hex: bool, json: bool) -> CmdResult {
    let r = Reader::open(path)?;
    let size = r.len();
    let len = len.unwrap_or_else(|| size.saturating_sub(offset));
    check_range(offset, len, size)?;
    let mut buf = vec![0u8; len as usize];
    let seq = r.read_at(offset, &mut buf)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let res = if json {
        let mut v = json!({"path": path, "offset": offset, "len": len, "seq": seq});
        if hex {
            v["hex"] = util::to_hex(&buf).into();
        } else {
            v["base64"] = util::to_base64(&buf).into();
        }
        writeln!(out, "{v}")
    } else {
        util::hexdump(offset, &buf, &mut out)
    };
    finish_output(res.and_then(|()| out.flush()))
}

/// One published commit as `watch` reports it: its sequence number and the
/// byte ranges it changed (from the change ring in the live image), or a
/// run of commits that left the ring before the watcher read them.
struct Change {
    event: Event,
    /// The state's length when the watcher read the commit.
    len: u64,
    /// When the watcher woke for it.
    time: SystemTime,
}

impl Change {
    fn to_json(&self) -> Value {
        let time = util::rfc3339(self.time);
        match &self.event {
            Event::Change(c) => json!({
                "seq": c.seq,
                "ranges": c.ranges.iter()
                    .map(|r| json!({"offset": r.start, "len": r.end - r.start}))
                    .collect::<Vec<_>>(),
                "widened": c.widened,
                "len": self.len,
                "time": time,
            }),
            Event::Missed { first, last } => json!({
                "seq": last,
                "missed": {"first": first, "last": last},
                "len": self.len,
                "time": time,
            }),
        }
    }

    fn to_line(&self) -> String {
        let t = util::rfc3339(self.time);
        let t = &t[11..t.len() - 1];
        match &self.event {
            Event::Change(c) => format!(
                "{t}  commit {}  length {}  changed {}{}",
                c.seq,
                human(self.len),
                if c.ranges.is_empty() {
                    "nothing".to_owned()
                } else {
                    c.ranges
                        .iter()
                        .map(|r| format!("{}+{}", r.start, r.end - r.start))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                if c.widened { " (widened)" } else { "" }
            ),
            Event::Missed { first, last } => format!(
                "{t}  commits {first} to {last} missed (they left the change ring \
                 before the watcher read them)  length {}",
                human(self.len)
            ),
        }
    }
}

/// Sleeps until commits after `after` are published, or until `deadline`
/// (`None` then): every commit since `after`, oldest first.
fn next_changes(
    r: &Reader,
    after: u64,
    deadline: Option<Instant>,
) -> mapstate::Result<Option<Vec<Change>>> {
    loop {
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(w) => Some(w),
                None => return Ok(None),
            },
            None => Some(Duration::from_secs(3600)),
        };
        let events = r.wait_changes(after, wait)?;
        if !events.is_empty() {
            let (len, time) = (r.len(), SystemTime::now());
            return Ok(Some(
                events
                    .into_iter()
                    .map(|event| Change { event, len, time })
                    .collect(),
            ));
        }
    }
}

/// `watch`: a line (or a JSON object) per commit, as it happens.
pub(crate) fn watch(
    path: &Path,
    count: Option<u64>,
    timeout: Option<Duration>,
    json: bool,
) -> CmdResult {
    let r = Reader::open(path)?;
    let mut last = r.seq();
    let deadline = timeout.map(|t| Instant::now() + t);
    // The ready line: the waiter is registered from here on.
    eprintln!(
        "watching {} from commit {last} (times in UTC{})",
        path.display(),
        if count.is_none() && timeout.is_none() {
            "; Ctrl-C stops"
        } else {
            ""
        }
    );
    let mut seen = 0;
    let mut out = std::io::stdout().lock();
    while count.is_none_or(|c| seen < c) {
        let Some(changes) = next_changes(&r, last, deadline)? else {
            break;
        };
        for c in changes {
            if count.is_some_and(|n| seen >= n) {
                break;
            }
            let line = if json {
                c.to_json().to_string()
            } else {
                c.to_line()
            };
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                return finish_output(Err(e));
            }
            last = c.event.seq();
            seen += 1;
        }
    }
    Ok(EXIT_OK)
}
