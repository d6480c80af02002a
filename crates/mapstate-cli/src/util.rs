//! What every subcommand shares: exit codes and errors, parsing of sizes,
//! durations, durabilities and hex, human units, JSON helpers, progress
//! bars, and who holds a state's writer lock.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mapstate::{Durability, Error};

/// Everything went as asked.
pub(crate) const EXIT_OK: u8 = 0;
/// An error (I/O, bad state, out-of-range offset, ...).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// The command line was malformed (clap's own code).
pub(crate) const EXIT_USAGE: u8 = 2;
/// `torture`, `verify` or `check-fs` found a violated guarantee.
pub(crate) const EXIT_VIOLATION: u8 = 3;
/// Another writer holds the state.
pub(crate) const EXIT_LOCKED: u8 = 4;
/// The file does not exist, or may not be opened as asked.
pub(crate) const EXIT_ACCESS: u8 = 5;

/// The exit codes, as `--help` and the README show them.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  error (I/O, offset past the end, unusable state, ...)
  2  usage: the command line is malformed (a bad size, malformed hex, ...)
  3  a violation: torture saw a torn or lost commit, verify found the state
     damaged, or check-fs found a guarantee that does not hold
  4  locked: another process holds the writer lock (its pid is printed)
  5  not found or permission denied";

/// A failed command: the message to print and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) msg: String,
}

impl Failure {
    pub(crate) fn new(code: u8, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::new(exit_code(&e), e.to_string())
    }
}

/// The exit code of a library error.
pub(crate) fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Locked { .. } => EXIT_LOCKED,
        Error::NotFound { .. } | Error::PermissionDenied { .. } => EXIT_ACCESS,
        _ => EXIT_FAILURE,
    }
}

/// Whether a library error says the state's files are damaged.
pub(crate) fn is_damage(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt { .. }
            | Error::Truncated { .. }
            | Error::Foreign { .. }
            | Error::TooNew { .. }
            | Error::WriterDied { .. }
    )
}

/// What a subcommand returns.
pub(crate) type CmdResult = Result<u8, Failure>;

/// Parses a size or offset: `4096`, `0x1000`, `64k`, `1MiB`, `1.5 GiB`.
/// Units are powers of 1024; `kB`, `MB`, `GB` are refused as ambiguous.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(&hex.replace('_', ""), 16)
            .map_err(|e| format!("{s:?} is not a hex number: {e}"));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num = num.replace('_', "");
    let unit = unit.trim();
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        "kb" | "mb" | "gb" | "tb" => {
            return Err(format!(
                "{s:?}: write {}iB (powers of 1024) or the number of bytes",
                &unit[..1].to_ascii_uppercase()
            ));
        }
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    if num.is_empty() {
        return Err(format!("{s:?} is not a size (examples: 4096, 64KiB, 1MiB)"));
    }
    if num.contains('.') {
        let v: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a size (examples: 4096, 64KiB, 1.5GiB)"))?;
        let bytes = v * f64::from(1u32 << shift.min(30)) * if shift > 30 { 1024.0 } else { 1.0 };
        if bytes.fract() != 0.0 || !(0.0..1.8e19).contains(&bytes) {
            return Err(format!("{s:?} is not a whole number of bytes"));
        }
        return Ok(bytes as u64);
    }
    let v: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 4096, 64KiB, 1MiB)"))?;
    v.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Formats a byte count for people: `512 B`, `4 KiB`, `1.5 MiB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    let shown = if v.fract() == 0.0 {
        return format!("{v:.0} {}", UNITS[i]);
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    };
    if shown.trim_end_matches('0').ends_with('.') {
        // Rounded to a whole number it is not (4100 is not "4.00 KiB").
        format!("{bytes} B")
    } else {
        format!("{shown} {}", UNITS[i])
    }
}

/// Formats a change of size for people: `64 KiB -> 1 MiB` when both are
/// whole units, else in bytes (`65536 -> 65539 bytes`, not `64 KiB -> 64.0
/// KiB`).
pub(crate) fn human_change(old: u64, new: u64) -> String {
    let whole = |n: u64| n < 1024 || n % (1 << (10 * (n.ilog2() / 10))) == 0;
    if whole(old) && whole(new) {
        format!("{} -> {}", human(old), human(new))
    } else {
        format!("{old} -> {new} bytes")
    }
}

/// Formats a duration for people: `420 ns`, `12.5 µs`, `3.1 ms`, `2.0 s`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.1} s", ns / 1e9)
    }
}

/// Word-wraps `text` to lines of at most `width` characters (longer
/// words stay whole), the first line prefixed by `first`, the others by
/// as many spaces.
pub(crate) fn wrap(first: &str, text: &str, width: usize) -> String {
    let indent = " ".repeat(first.chars().count());
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line.clone_from(&indent);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out
}

/// Parses a duration: `1s`, `250ms`, `100us`, `2m`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 1s, 250ms)"))?;
    let secs = match unit.trim() {
        "ns" => v / 1e9,
        "us" | "µs" => v / 1e6,
        "ms" => v / 1e3,
        "s" | "" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (use ns, us, ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a durability: `pagecache`, `periodic:1s` (or `periodic`, 1 s), `sync`.
pub(crate) fn parse_durability(s: &str) -> Result<Durability, String> {
    let l = s.trim().to_ascii_lowercase();
    match l.as_str() {
        "pagecache" | "page-cache" => Ok(Durability::PageCache),
        "sync" => Ok(Durability::Sync),
        "periodic" => Ok(Durability::Periodic(Duration::from_secs(1))),
        _ => match l.strip_prefix("periodic:") {
            Some(d) => {
                let d = parse_duration(d)?;
                if d.is_zero() {
                    return Err("periodic:0 makes no sense: use sync".into());
                }
                Ok(Durability::Periodic(d))
            }
            None => Err(format!(
                "{s:?} is not a durability: use pagecache, periodic:1s or sync"
            )),
        },
    }
}

/// The name of a durability as the command line spells it.
pub(crate) fn durability_name(d: Durability) -> String {
    match d {
        Durability::Periodic(t) => format!("periodic:{}", human_duration(t).replace(' ', "")),
        Durability::Sync => "sync".into(),
        _ => "pagecache".into(),
    }
}

/// Parses hex bytes: `deadbeef`, `0xDEAD_BEEF`, `de ad be ef`, `de:ad`.
pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let mut digits = Vec::with_capacity(t.len());
    for (i, c) in t.char_indices() {
        if c.is_whitespace() || c == ':' || c == '_' || c == '-' {
            continue;
        }
        let d = c.to_digit(16).ok_or_else(|| {
            format!("malformed hex {s:?}: {c:?} at position {i} is not a hex digit")
        })?;
        digits.push(d as u8);
    }
    if digits.len() % 2 != 0 {
        return Err(format!(
            "malformed hex {s:?}: {} digits, but each byte needs two",
            digits.len()
        ));
    }
    Ok(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Lower-case hex of `bytes`, no separators.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Standard base64 (RFC 4648, with padding).
pub(crate) fn to_base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An xxd-like dump of `bytes`, whose first byte is at `offset`: 16 bytes
/// a line, runs of identical lines squeezed into `*`.
pub(crate) fn hexdump(
    offset: u64,
    bytes: &[u8],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let mut prev: Option<&[u8]> = None;
    let mut squeezed = false;
    for (i, line) in bytes.chunks(16).enumerate() {
        let at = offset + i as u64 * 16;
        if line.len() == 16 && prev == Some(line) {
            if !squeezed {
                writeln!(out, "*")?;
                squeezed = true;
            }
            continue;
        }
        squeezed = false;
        prev = Some(line);
        let mut hex = String::with_capacity(40);
        for (j, b) in line.iter().enumerate() {
            let _ = write!(hex, "{b:02x}");
            if j % 2 == 1 {
                hex.push(' ');
            }
        }
        let text: String = line
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        writeln!(out, "{at:08x}: {hex:<40} {text}")?;
    }
    if squeezed {
        writeln!(out, "{:08x}", offset + bytes.len() as u64)?;
    }
    Ok(())
}

/// `t` as RFC 3339 in UTC with microseconds: `2026-11-22T04:10:11.123456Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Parses what [`rfc3339`] writes back into a time.
#[allow(clippy::many_single_char_names)] // the names of the calendar algorithm
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, sec) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let micros = match s.get(19..s.len() - 1) {
        Some(f) if f.starts_with('.') => {
            let digits = &f[1..];
            let v: u64 = digits.parse().ok()?;
            v * 10u64.pow(6u32.saturating_sub(digits.len() as u32))
        }
        _ => 0,
    };
    // days_from_civil.
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    Some(
        UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?) + Duration::from_micros(micros),
    )
}

/// Whether progress bars may be drawn: stdout and stderr are terminals.
pub(crate) fn interactive() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// A progress bar over `len` units (bytes when `bytes`), drawn on stderr
/// when stdout is a terminal and `show`; hidden otherwise.
pub(crate) fn bar(len: u64, msg: &str, bytes: bool, show: bool) -> ProgressBar {
    if !show || !interactive() {
        return ProgressBar::hidden();
    }
    let template = if bytes {
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})"
    } else {
        "{msg} [{bar:30}] {pos}/{len} ({elapsed})"
    };
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_owned());
    pb
}

/// A spinner with a message, drawn like [`bar`].
pub(crate) fn spinner(msg: &str, show: bool) -> ProgressBar {
    if !show || !interactive() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
    );
    pb.set_message(msg.to_owned());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// Who holds the writer lock of a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterLock {
    /// Nobody: no writer has the state open.
    Free,
    /// A process holds it; its pid if it has recorded it yet.
    Held(Option<u32>),
    /// The kernel could not be asked (`F_OFD_GETLK` failed).
    Unknown,
}

/// Whether a writer holds the writer lock of the state `r` reads, and its
/// pid as the writer recorded it (the library asks the kernel for the OFD
/// lock, then reads the pid from the live image).
pub(crate) fn writer_of(r: &mapstate::Reader) -> WriterLock {
    match r.has_writer() {
        Ok(false) => WriterLock::Free,
        Ok(true) => WriterLock::Held(r.writer_pid().ok().flatten()),
        Err(_) => WriterLock::Unknown,
    }
}

/// What the kernel answered to `MAP_SHARED_VALIDATE | MAP_SYNC` on one file,
/// in the words `info` and `check-fs` both print.
pub(crate) struct MapSyncReport {
    /// Whether it is supported (`None`: the probe itself failed).
    pub(crate) supported: Option<bool>,
    /// The errno of the refusal (`EOPNOTSUPP`).
    pub(crate) errno: Option<String>,
    /// The filesystem type from the mount table (`ext4`).
    pub(crate) fs: String,
    /// `supported (DAX on ext4)` or `not supported (EOPNOTSUPP on ext4)`.
    pub(crate) text: String,
}

impl MapSyncReport {
    /// The report as a JSON object.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"supported": self.supported, "errno": self.errno, "fs": self.fs,
                           "text": self.text})
    }
}

/// Probes `MAP_SYNC` on the file at `path` (mapped read-only for a moment;
/// nothing is written) with the library's [`mapstate::probe_map_sync`].
pub(crate) fn map_sync_report(path: &Path) -> MapSyncReport {
    let fs = mount_type(path).map_or_else(|| "an unknown filesystem".into(), |(t, _)| t);
    match mapstate::probe_map_sync(path) {
        Ok(mapstate::MapSyncSupport::Supported) => MapSyncReport {
            supported: Some(true),
            errno: None,
            text: format!("supported (DAX on {fs})"),
            fs,
        },
        Ok(u @ mapstate::MapSyncSupport::Unsupported { .. }) => {
            let name = u.errno_name().unwrap_or_default();
            MapSyncReport {
                supported: Some(false),
                text: format!("not supported ({name} on {fs})"),
                errno: Some(name),
                fs,
            }
        }
        // A future variant, or the probe could not map the file at all.
        Ok(_) => MapSyncReport {
            supported: None,
            errno: None,
            text: "unknown".into(),
            fs,
        },
        Err(e) => MapSyncReport {
            supported: None,
            errno: None,
            text: format!("could not be probed: {e}"),
            fs,
        },
    }
}

/// Checks that `dir` (given as option `what`) is a directory this process
/// may create files in: exit 5 if it is missing or not writable, 1 if it is
/// not a directory.
pub(crate) fn check_dir(dir: &Path, what: &str) -> Result<(), Failure> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::new(
            EXIT_ACCESS,
            format!("{what} {}: no such directory", dir.display()),
        )),
        Err(e) => Err(Failure::new(
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                EXIT_ACCESS
            } else {
                EXIT_FAILURE
            },
            format!("{what} {}: {e}", dir.display()),
        )),
        Ok(md) if !md.is_dir() => Err(Failure::new(
            EXIT_FAILURE,
            format!("{what} {}: not a directory", dir.display()),
        )),
        Ok(_) => rustix::fs::access(
            dir,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .map_err(|e| {
            Failure::new(
                EXIT_ACCESS,
                format!(
                    "{what} {}: permission denied: this user may not create files there ({e})",
                    dir.display()
                ),
            )
        }),
    }
}

/// The filesystem type of `path` as the kernel names it in the mount
/// table (`ext4`, `tmpfs`, `fuse.sshfs`, ...), from the longest mount
/// point that contains it.
pub(crate) fn mount_type(path: &Path) -> Option<(String, String)> {
    let abs = std::fs::canonicalize(path).ok()?;
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String, String)> = None;
    for line in table.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
        let f: Vec<&str> = line.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(mp), Some(fstype), Some(src)) = (f.get(4), f.get(dash + 1), f.get(dash + 2))
        else {
            continue;
        };
        let mp = mp.replace("\\040", " ");
        if abs.starts_with(&mp) && best.as_ref().is_none_or(|b| mp.len() >= b.0) {
            best = Some((mp.len(), (*fstype).to_owned(), (*src).to_owned()));
        }
    }
    best.map(|(_, t, s)| (t, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(parse_size("1MB").unwrap_err().contains("MiB"));
        assert!(parse_size("x").is_err());
        assert!(parse_size("1.3B").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(human(512), "512 B");
        assert_eq!(human(4096), "4 KiB");
        assert_eq!(human(1536 << 10), "1.50 MiB");
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(4100), "4100 B");
        assert_eq!(human((64 << 10) + 3), "65539 B");
        assert_eq!(human_change(64 << 10, 1 << 20), "64 KiB -> 1 MiB");
        assert_eq!(human_change(65536, 65539), "65536 -> 65539 bytes");
        assert_eq!(human_change(100, 1 << 30), "100 B -> 1 GiB");
        assert_eq!(
            human_change(3 << 20, (3 << 20) + 4096),
            "3145728 -> 3149824 bytes"
        );
    }

    #[test]
    fn durations_and_durabilities_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_duration("1 fortnight").is_err());
        assert_eq!(parse_durability("sync"), Ok(Durability::Sync));
        assert_eq!(parse_durability("PageCache"), Ok(Durability::PageCache));
        assert_eq!(
            parse_durability("periodic:100ms"),
            Ok(Durability::Periodic(Duration::from_millis(100)))
        );
        assert!(parse_durability("fast").is_err());
        assert_eq!(
            durability_name(Durability::Periodic(Duration::from_secs(1))),
            "periodic:1.0s"
        );
    }

    #[test]
    fn hex_and_base64() {
        assert_eq!(parse_hex("deadBEEF"), Ok(vec![0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(parse_hex("0x de:ad"), Ok(vec![0xde, 0xad]));
        assert!(parse_hex("abc").unwrap_err().contains("two"));
        assert!(parse_hex("zz").unwrap_err().contains("not a hex digit"));
        assert_eq!(to_hex(&[0, 255]), "00ff");
        assert_eq!(to_base64(b""), "");
        assert_eq!(to_base64(b"f"), "Zg==");
        assert_eq!(to_base64(b"fo"), "Zm8=");
        assert_eq!(to_base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn times_round_trip() {
        let t = UNIX_EPOCH + Duration::from_micros(1_763_791_811_123_456);
        let s = rfc3339(t);
        assert_eq!(s, "2025-11-22T06:10:11.123456Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn wrap_keeps_the_indent() {
        assert_eq!(
            wrap("  ok  ", "one two three four", 16),
            "  ok  one two\n      three four"
        );
        assert_eq!(wrap("> ", "a-very-long-word", 5), "> a-very-long-word");
    }

    #[test]
    fn hexdump_squeezes_runs() {
        let mut v = vec![0u8; 64];
        v[..5].copy_from_slice(b"hello");
        let mut out = Vec::new();
        hexdump(0, &v, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "00000000: 6865 6c6c 6f00 0000 0000 0000 0000 0000  hello...........\n\
             00000010: 0000 0000 0000 0000 0000 0000 0000 0000  ................\n\
             *\n\
             00000040\n"
        );
    }
}
