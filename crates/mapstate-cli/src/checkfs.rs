//! `check-fs DIR`: what mapstate can promise on the filesystem under DIR.
//!
//! Every check runs for real in a scratch directory made inside DIR (and
//! removed at the end): the filesystem's type, `fallocate`, `fdatasync`
//! latency, `MAP_SYNC`, the tmpfs for live images, the writer lock, a
//! change notification across processes, a short kill torture and the write
//! amplification of `msync` with large folios. Then a verdict per guarantee.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use mapstate::{Error, Filesystem, Flush, FsClass, MapOptions, Writer};
use serde_json::{Value, json};

use crate::util::{
    self, CmdResult, EXIT_ACCESS, EXIT_FAILURE, EXIT_OK, EXIT_VIOLATION, Failure, human,
    human_duration,
};

/// The width of the text report.
const WIDTH: usize = 80;

/// The filesystem under `dir`: (its name, as shown with its source, class,
/// what it means).
fn classify(dir: &Path) -> Result<(String, String, FsClass, String), String> {
    let fs = Filesystem::of(dir).map_err(|e| e.to_string())?;
    let why = match fs.class {
        FsClass::Unsuitable => format!("refused: {}", fs.note),
        FsClass::Unknown => format!("{}: the checks below tell what works", fs.note),
        _ => fs.note.to_owned(),
    };
    // The mount table tells ext4 from ext2, which share a statfs magic.
    let Some((name, source)) = util::mount_type(dir) else {
        return Ok((fs.name.into(), fs.name.into(), fs.class, why));
    };
    let shown = if source == name || source == "none" {
        name.clone()
    } else {
        format!("{name} on {source}")
    };
    Ok((name, shown, fs.class, why))
}

/// One line of the report.
struct Check {
    name: &'static str,
    result: String,
    /// `Some(false)` fails a guarantee; `None` is information.
    ok: Option<bool>,
    /// Information that needs attention (shown as `warn`, not `info`).
    warn: bool,
}

/// The percentile `p` (0 to 100) of sorted `v`.
fn percentile(v: &[Duration], p: usize) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[(v.len() - 1) * p / 100]
}

/// `fdatasync` after a 4 KiB write, up to 200 times or 1.5 s: (p50, p99, n).
fn fdatasync_latency(dir: &Path) -> std::io::Result<(Duration, Duration, usize)> {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("sync-latency"))?;
    let page = [0x5au8; 4096];
    for i in 0..256 {
        f.write_all_at(&page, i * 4096)?;
    }
    f.sync_all()?;
    let mut times = Vec::new();
    let start = Instant::now();
    for i in 0u64..200 {
        if start.elapsed() > Duration::from_millis(1500) {
            break;
        }
        f.write_all_at(&page, (i * 37 % 256) * 4096)?;
        let t = Instant::now();
        f.sync_data()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok((percentile(&times, 50), percentile(&times, 99), times.len()))
}

/// This process's `write_bytes` from `/proc/self/io`: bytes it caused to
/// be written to storage (accounted when pages are dirtied).
fn write_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/io").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

/// Dirties one byte in the middle of an 8 MiB file written with large
/// `write(2)`s, then `msync`s its page: (bytes written, msync time).
fn msync_amplification(dir: &Path) -> mapstate::Result<(Option<u64>, Duration)> {
    let path = dir.join("folio");
    let io = |e| Error::Io {
        op: "write",
        path: path.clone(),
        source: e,
    };
    let mut file = File::create(&path).map_err(io)?;
    let chunk = vec![0xa5u8; 1 << 20];
    for _ in 0..8 {
        file.write_all(&chunk).map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    drop(file);
    let mut map = MapOptions::new().open(&path)?;
    let mut byte = [0u8; 1];
    map.read_at(4 << 20, &mut byte)?; // fault the page in before measuring
    let before = write_bytes();
    map.write_at((4 << 20) + 100, &[byte[0] ^ 1])?;
    let start = Instant::now();
    map.flush_range((4 << 20)..(4 << 20) + 4096, Flush::Sync)?;
    let took = start.elapsed();
    let after = write_bytes();
    Ok((after.zip(before).map(|(a, b)| a.saturating_sub(b)), took))
}

/// Runs `check-fs`.
#[allow(clippy::too_many_lines)] // one report, check by check
pub(crate) fn run(dir: &Path, kills: u64, json: bool) -> CmdResult {
    if !dir.is_dir() {
        return Err(Failure::new(
            if dir.exists() {
                EXIT_FAILURE
            } else {
                util::EXIT_ACCESS
            },
            format!(
                "{} is not a directory: name a directory on the filesystem to check",
                dir.display()
            ),
        ));
    }
    let (fs_name, fs_shown, class, why) =
        classify(dir).map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    let scratch = tempfile::Builder::new()
        .prefix(".mapstate-check-")
        .tempdir_in(dir)
        .map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
                EXIT_ACCESS
            } else {
                EXIT_FAILURE
            };
            Failure::new(
                code,
                format!(
                    "cannot create a scratch directory in {}: {e}",
                    dir.display()
                ),
            )
        })?;
    let s = scratch.path();
    let steps = 8 + u64::from(kills > 0);
    let pb = util::bar(steps, "check-fs", false, !json);
    let mut checks: Vec<Check> = Vec::new();
    let step = |pb: &indicatif::ProgressBar, msg: &str| {
        pb.set_message(format!("check-fs: {msg}"));
        pb.inc(1);
    };

    checks.push(Check {
        name: "filesystem",
        result: format!("{fs_shown}: {why}"),
        ok: match class {
            FsClass::Unsuitable => Some(false),
            FsClass::Disk => Some(true),
            _ => None,
        },
        warn: matches!(class, FsClass::Memory | FsClass::Limited | FsClass::Unknown),
    });

    step(&pb, "fallocate");
    let fallocate = {
        let r = File::create(s.join("fallocate")).and_then(|f| {
            rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, 1 << 20)
                .map_err(std::io::Error::from)
        });
        match r {
            Ok(()) => (
                true,
                "works (1 MiB preallocated): growth is an error on a full disk, never SIGBUS"
                    .to_owned(),
            ),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) => (
                false,
                "not supported (EOPNOTSUPP): mapstate refuses to grow states here, since a store \
                 into a sparse page on a full disk is a SIGBUS"
                    .to_owned(),
            ),
            Err(e) => (false, format!("failed: {e}")),
        }
    };
    checks.push(Check {
        name: "fallocate",
        result: fallocate.1.clone(),
        ok: Some(fallocate.0),
        warn: false,
    });

    step(&pb, "fdatasync latency");
    let sync = fdatasync_latency(s);
    checks.push(match &sync {
        Ok((p50, p99, n)) => Check {
            name: "fdatasync",
            result: format!(
                "p50 {}, p99 {} ({n} syncs after a 4 KiB write): a Sync commit costs about this{}",
                human_duration(*p50),
                human_duration(*p99),
                if class == FsClass::Memory {
                    " (a no-op on tmpfs)"
                } else if *p50 < Duration::from_micros(15) {
                    "; this fast, the device may acknowledge flushes from a volatile cache"
                } else {
                    ""
                }
            ),
            ok: Some(true),
            warn: false,
        },
        Err(e) => Check {
            name: "fdatasync",
            result: format!("failed: {e}"),
            ok: Some(false),
            warn: false,
        },
    });

    step(&pb, "MAP_SYNC");
    // The same probe and words as `mapstate info`, on a file of one page.
    let probe_file = s.join("map-sync");
    let map_sync =
        std::fs::write(&probe_file, [0_u8; 4096]).map(|()| util::map_sync_report(&probe_file));
    checks.push(Check {
        name: "MAP_SYNC",
        result: match &map_sync {
            Ok(r) if r.supported == Some(true) => format!(
                "{}: stores are durable once flushed from the CPU cache",
                r.text
            ),
            Ok(r) if r.supported == Some(false) => format!(
                "{}: only DAX filesystems on persistent memory offer it; mapstate does not \
                 need it: it syncs its log instead",
                r.text
            ),
            Ok(r) => r.text.clone(),
            Err(e) => format!("could not be tried: {e}"),
        },
        ok: None,
        warn: false,
    });

    step(&pb, "live image");
    let shm = rustix::fs::statfs("/dev/shm").ok();
    #[allow(clippy::unnecessary_cast)]
    let live = match shm {
        Some(st) if st.f_type as i64 == 0x0102_1994 => {
            let bsize = st.f_bsize as u64;
            let (free, total) = (st.f_bavail as u64 * bsize, st.f_blocks as u64 * bsize);
            (
                Some(free),
                format!(
                    "/dev/shm is tmpfs: {} free of {}; live images (the state now, in memory) \
                     go there, so states up to about {} fit",
                    human(free),
                    human(total),
                    human(free)
                ),
            )
        }
        _ => (
            None,
            "no tmpfs at /dev/shm: live images go beside the durable file (NAME-live), \
             marked with the boot id"
                .to_owned(),
        ),
    };
    checks.push(Check {
        name: "live image",
        result: live.1.clone(),
        ok: None,
        warn: false,
    });

    step(&pb, "writer lock");
    let state = s.join("lock.state");
    let opts = Writer::options().create(true).len(1 << 16);
    let lock = opts.open(&state).map(|w| {
        let second = opts.open(&state);
        drop(w);
        second
    });
    let lock_ok = matches!(lock, Ok(Err(Error::Locked { .. })));
    checks.push(Check {
        name: "writer lock",
        result: match lock {
            Ok(Err(Error::Locked { pid, .. })) => format!(
                "a second writer gets Locked (pid {}): OFD locks work",
                pid.map_or_else(|| "?".into(), |p| p.to_string())
            ),
            Ok(Ok(_)) => {
                "a second writer was NOT refused: two writers could corrupt a state".into()
            }
            Ok(Err(e)) | Err(e) => format!("could not be tried: {e}"),
        },
        ok: Some(lock_ok),
        warn: false,
    });

    step(&pb, "notification");
    let notify = crate::demo::notify_latency(&state);
    checks.push(Check {
        name: "notification",
        result: match &notify {
            Ok(d) => format!(
                "a watcher in another process woke {} after a commit was called",
                human_duration(*d)
            ),
            Err(e) => format!("failed: {e}"),
        },
        ok: Some(notify.is_ok()),
        warn: false,
    });
    if let Ok(w) = Writer::open(&state) {
        let _ = w.remove();
    }

    let mut torture = None;
    if kills > 0 {
        step(&pb, "kill torture");
        let tdir = s.join("torture");
        let r = std::fs::create_dir(&tdir)
            .map_err(|e| Error::Io {
                op: "mkdir",
                path: tdir.clone(),
                source: e,
            })
            .and_then(|()| {
                let mut tick = |k: u64| {
                    pb.set_message(format!("check-fs: kill torture ({k}/{kills})"));
                };
                crate::torture::run_observed(kills, Some(tdir), 1, &mut tick, false)
            });
        checks.push(match &r {
            Ok((torn, lost)) => Check {
                name: "kill torture",
                result: format!(
                    "{kills} SIGKILLs of a committing writer{}: {torn} torn, {lost} lost",
                    if crate::torture::has_step_kills() {
                        ""
                    } else {
                        " at random moments"
                    }
                ),
                ok: Some(*torn == 0 && *lost == 0),
                warn: false,
            },
            Err(e) => Check {
                name: "kill torture",
                result: format!("could not run: {e}"),
                ok: Some(false),
                warn: false,
            },
        });
        torture = Some(r.ok());
    }

    step(&pb, "msync amplification");
    let amp = msync_amplification(s);
    checks.push(Check {
        name: "msync",
        result: match &amp {
            _ if class == FsClass::Memory => {
                "nothing to measure: msync writes nothing on tmpfs".into()
            }
            Ok((Some(bytes), took)) if *bytes > 4096 => format!(
                "dirtying 1 byte and msyncing its page wrote {} ({}x the 4 KiB page) in {}: \
                 large folios; mapstate's log keeps 4 KiB folios (MADV_RANDOM), so a commit's \
                 sync writes what it changed",
                human(*bytes),
                bytes / 4096,
                human_duration(*took)
            ),
            Ok((Some(bytes), took)) => format!(
                "dirtying 1 byte and msyncing its page wrote {} in {}: no amplification",
                human(*bytes),
                human_duration(*took)
            ),
            Ok((None, took)) => format!(
                "msync of one dirty page took {} (/proc/self/io is missing: bytes not measured)",
                human_duration(*took)
            ),
            Err(e) => format!("could not be measured: {e}"),
        },
        ok: None,
        warn: false,
    });
    pb.finish_and_clear();

    // Verdicts, one per guarantee of the contract.
    let refused = class == FsClass::Unsuitable;
    let mut verdicts: Vec<(&str, Option<bool>, String)> = Vec::new();
    let torture_ok = match torture {
        Some(Some((0, 0))) => Some(true),
        Some(_) => Some(false),
        None => None,
    };
    verdicts.push((
        "process crash (SIGKILL, abort, OOM kill): every returned commit kept, never torn",
        if refused {
            Some(false)
        } else {
            torture_ok.map(|t| t && lock_ok)
        },
        if refused {
            format!("does not hold on {fs_name}")
        } else {
            match torture_ok {
                Some(true) => format!("holds: {kills} kills, none torn or lost"),
                Some(false) => "VIOLATED: see the kill torture above".into(),
                None => "not tested (--kills 0)".into(),
            }
        },
    ));
    let synced = sync.is_ok();
    verdicts.push((
        "power cut: always consistent; Sync loses no returned commit",
        if refused || !synced {
            Some(false)
        } else {
            None
        },
        if class == FsClass::Memory {
            "does not apply: tmpfs keeps nothing across a power cut or reboot".into()
        } else if refused {
            format!("does not hold on {fs_name}")
        } else if !synced {
            "does not hold: fdatasync fails here".into()
        } else {
            "expected, not provable from here: the syncs it relies on work, but whether the \
             device honours them cannot be seen from a running system"
                .into()
        },
    ));
    verdicts.push((
        "growth: a full disk is an error, never a SIGBUS",
        Some(fallocate.0 && !refused),
        if fallocate.0 && !refused {
            "holds: fallocate works".into()
        } else {
            "does not hold: states cannot grow here".into()
        },
    ));
    verdicts.push((
        "notification of commits to other processes",
        Some(notify.is_ok() && !refused),
        match (&notify, refused) {
            (Ok(d), false) => format!("holds: woke in {}", human_duration(*d)),
            (Ok(_), true) => "on this machine only: other machines are never woken".into(),
            (Err(e), _) => format!("does not hold: {e}"),
        },
    ));
    verdicts.push((
        "one writer at a time (a second gets Locked with the holder's pid)",
        Some(lock_ok && !refused),
        if lock_ok && !refused {
            "holds".into()
        } else {
            "does not hold".into()
        },
    ));
    let violated =
        verdicts.iter().any(|v| v.1 == Some(false)) || checks.iter().any(|c| c.ok == Some(false));

    if json {
        let checks: Vec<Value> = checks
            .iter()
            .map(|c| json!({"check": c.name, "result": c.result, "ok": c.ok}))
            .collect();
        let verdicts: Vec<Value> = verdicts
            .iter()
            .map(|(g, holds, why)| json!({"guarantee": g, "holds": holds, "verdict": why}))
            .collect();
        println!(
            "{}",
            json!({"dir": dir, "filesystem": fs_name, "mount": fs_shown,
                   "live_image_free": live.0, "checks": checks, "verdicts": verdicts,
                   "ok": !violated})
        );
    } else {
        println!("check-fs {} ({fs_shown})", dir.display());
        for c in &checks {
            let mark = match (c.ok, c.warn) {
                (Some(true), _) => "ok",
                (Some(false), _) => "FAIL",
                (None, true) => "warn",
                (None, false) => "info",
            };
            println!(
                "{}",
                util::wrap(&format!("  {mark:<5} {:<13} ", c.name), &c.result, WIDTH)
            );
        }
        println!("guarantees here:");
        for (g, holds, why) in &verdicts {
            let mark = match holds {
                Some(true) => "yes",
                Some(false) => "NO",
                None if class == FsClass::Memory && g.starts_with("power") => "n/a",
                None => "?",
            };
            println!("{}", util::wrap(&format!("  {mark:<4} "), g, WIDTH));
            println!("{}", util::wrap("       ", why, WIDTH));
        }
    }
    Ok(if violated { EXIT_VIOLATION } else { EXIT_OK })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystems_get_the_right_verdict() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let (name, _, class, _) = classify(dir.path()).unwrap();
        assert_eq!((name.as_str(), class), ("tmpfs", FsClass::Memory));
    }

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50), Duration::from_micros(50));
        assert_eq!(percentile(&v, 99), Duration::from_micros(99));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }
}
