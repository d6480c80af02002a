//! The checks of the filesystem and its calls: its type, `fallocate`,
//! `fdatasync`, `MAP_SYNC`, the tmpfs for live images and `msync`.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use mapstate::{Error, Filesystem, Flush, FsClass, MapOptions};

use super::Check;
use crate::util::{self, human, human_duration};

/// The filesystem under the directory checked.
pub(super) struct Mount {
    /// Its type (`ext4`).
    pub(super) name: String,
    /// Its type as shown, with its source (`ext4 on /dev/vda`).
    pub(super) shown: String,
    pub(super) class: FsClass,
    /// What the class means for mapstate.
    pub(super) why: String,
}

/// The filesystem under `dir`.
pub(super) fn classify(dir: &Path) -> Result<Mount, String> {
    let fs = Filesystem::of(dir).map_err(|e| e.to_string())?;
    let why = match fs.class {
        FsClass::Unsuitable => format!("refused: {}", fs.note),
        FsClass::Unknown => format!("{}: the checks below tell what works", fs.note),
        _ => fs.note.to_owned(),
    };
    // The mount table tells ext4 from ext2, which share a statfs magic.
    let Some((name, source)) = util::mount_type(dir) else {
        return Ok(Mount {
            name: fs.name.into(),
            shown: fs.name.into(),
            class: fs.class,
            why,
        });
    };
    let shown = if source == name || source == "none" {
        name.clone()
    } else {
        format!("{name} on {source}")
    };
    Ok(Mount {
        name,
        shown,
        class: fs.class,
        why,
    })
}

/// The filesystem's class: refused, fit for everything, or to be seen.
pub(super) fn check_filesystem(mount: &Mount) -> Check {
    Check {
        name: "filesystem",
        result: format!("{}: {}", mount.shown, mount.why),
        ok: match mount.class {
            FsClass::Unsuitable => Some(false),
            FsClass::Disk => Some(true),
            _ => None,
        },
        warn: matches!(
            mount.class,
            FsClass::Memory | FsClass::Limited | FsClass::Unknown
        ),
    }
}

/// Preallocates 1 MiB: without `fallocate`, states cannot grow safely.
pub(super) fn check_fallocate(s: &Path) -> Check {
    let r = File::create(s.join("fallocate")).and_then(|f| {
        rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, 1 << 20)
            .map_err(std::io::Error::from)
    });
    match r {
        Ok(()) => Check::new(
            "fallocate",
            true,
            "works (1 MiB preallocated): growth is an error on a full disk, never SIGBUS".into(),
        ),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) => {
            Check::new(
                "fallocate",
                false,
                "not supported (EOPNOTSUPP): mapstate refuses to grow states here, since a store \
                 into a sparse page on a full disk is a SIGBUS"
                    .into(),
            )
        }
        Err(e) => Check::new("fallocate", false, format!("failed: {e}")),
    }
}

/// The latency of `fdatasync`, which a Sync commit pays.
pub(super) fn check_fdatasync(s: &Path, class: FsClass) -> Check {
    let (p50, p99, n) = match fdatasync_latency(s) {
        Ok(latency) => latency,
        Err(e) => return Check::new("fdatasync", false, format!("failed: {e}")),
    };
    let note = if class == FsClass::Memory {
        " (a no-op on tmpfs)"
    } else if p50 < Duration::from_micros(15) {
        "; this fast, the device may acknowledge flushes from a volatile cache"
    } else {
        ""
    };
    Check::new(
        "fdatasync",
        true,
        format!(
            "p50 {}, p99 {} ({n} syncs after a 4 KiB write): a Sync commit costs about this{note}",
            human_duration(p50),
            human_duration(p99),
        ),
    )
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

/// Whether the kernel maps a file here with `MAP_SYNC`: the same probe and
/// words as `mapstate info`, on a file of one page.
pub(super) fn check_map_sync(s: &Path) -> Check {
    let probe_file = s.join("map-sync");
    let map_sync =
        std::fs::write(&probe_file, [0_u8; 4096]).map(|()| util::map_sync_report(&probe_file));
    let result = match map_sync {
        Ok(r) if r.supported == Some(true) => format!(
            "{}: stores are durable once flushed from the CPU cache",
            r.text
        ),
        Ok(r) if r.supported == Some(false) => format!(
            "{}: only DAX filesystems on persistent memory offer it; mapstate does not \
             need it: it syncs its log instead",
            r.text
        ),
        Ok(r) => r.text,
        Err(e) => format!("could not be tried: {e}"),
    };
    Check::info("MAP_SYNC", result)
}

/// Where live images go, and how much room they have there: (the check,
/// the bytes free on `/dev/shm` when it is a tmpfs).
#[allow(clippy::unnecessary_cast)]
pub(super) fn check_live_image() -> (Check, Option<u64>) {
    match rustix::fs::statfs("/dev/shm").ok() {
        Some(st) if st.f_type as i64 == 0x0102_1994 => {
            let bsize = st.f_bsize as u64;
            let (free, total) = (st.f_bavail as u64 * bsize, st.f_blocks as u64 * bsize);
            let result = format!(
                "/dev/shm is tmpfs: {} free of {}; live images (the state now, in memory) \
                 go there, so states up to about {} fit",
                human(free),
                human(total),
                human(free)
            );
            (Check::info("live image", result), Some(free))
        }
        _ => (
            Check::info(
                "live image",
                "no tmpfs at /dev/shm: live images go beside the durable file (NAME-live), \
                 marked with the boot id"
                    .into(),
            ),
            None,
        ),
    }
}

/// What `msync` of one dirty page writes: more than the page with large
/// folios.
pub(super) fn check_msync(s: &Path, class: FsClass) -> Check {
    let amp = msync_amplification(s);
    let result = match amp {
        _ if class == FsClass::Memory => "nothing to measure: msync writes nothing on tmpfs".into(),
        Ok((Some(bytes), took)) if bytes > 4096 => format!(
            "dirtying 1 byte and msyncing its page wrote {} ({}x the 4 KiB page) in {}: \
             large folios; mapstate's log keeps 4 KiB folios (MADV_RANDOM), so a commit's \
             sync writes what it changed",
            human(bytes),
            bytes / 4096,
            human_duration(took)
        ),
        Ok((Some(bytes), took)) => format!(
            "dirtying 1 byte and msyncing its page wrote {} in {}: no amplification",
            human(bytes),
            human_duration(took)
        ),
        Ok((None, took)) => format!(
            "msync of one dirty page took {} (/proc/self/io is missing: bytes not measured)",
            human_duration(took)
        ),
        Err(e) => format!("could not be measured: {e}"),
    };
    Check::info("msync", result)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystems_get_the_right_verdict() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let mount = classify(dir.path()).unwrap();
        assert_eq!(
            (mount.name.as_str(), mount.class),
            ("tmpfs", FsClass::Memory)
        );
    }

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50), Duration::from_micros(50));
        assert_eq!(percentile(&v, 99), Duration::from_micros(99));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }
}
