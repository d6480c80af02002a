//! Extend-on-write: stores past the end grow the state from the SIGSEGV
//! handler, from several threads; full filesystems and the maximum size are
//! errors at commit, never a SIGBUS; faults elsewhere still kill.
//!
//! Tests that need root (mounting a small tmpfs or a loop ext4) print
//! `SKIPPED <test>: <why>` on stderr when they cannot run.
#![allow(clippy::many_single_char_names)]
// Two deliberate raw accesses: a store in the guard past the maximum size,
// and a null dereference in a child that must die.
#![allow(unsafe_code)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use mapstate::{Error, Writer, WriterOptions};

mod common;
use common::{Mount, is_root, skip};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
const ROLE: &str = "MAPSTATE_GROW_CHILD";

fn no_tracking_if_asked() {
    if std::env::var_os(NO_TRACKING).is_some() {
        mapstate::testing::disable_write_tracking();
    }
}

fn opts(live: &Path, max: u64) -> WriterOptions {
    Writer::options()
        .create(true)
        .len(PAGE)
        .max_size(max)
        .live_dir(live)
}

/// Set in the child run of `every_test_again_without_write_tracking`.
const NO_TRACKING: &str = "MAPSTATE_GROW_NO_TRACKING";

fn setup(max: u64) -> (tempfile::TempDir, PathBuf, WriterOptions) {
    no_tracking_if_asked();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let live = dir.path().join("shm");
    std::fs::create_dir(&live).unwrap();
    let p = dir.path().join("state");
    (dir, p, opts(&live, max))
}

/// The byte a test writes at `off`.
fn pattern(off: u64) -> u8 {
    (off.wrapping_mul(0x9e37_79b9) >> 13) as u8 | 1
}

fn read_all(p: &Path, o: &WriterOptions) -> (u64, Vec<u8>) {
    let r = o.reader().open(p).unwrap();
    r.snapshot().unwrap()
}

#[test]
fn plain_stores_far_past_the_end_from_several_threads() {
    const THREADS: u64 = 4;
    const SPAN: u64 = 24 * MIB;
    let (d, p, o) = setup(256 * MIB);
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    t.write_at(0, b"head").unwrap();
    assert_eq!(t.len(), PAGE);
    let all = t.extend_on_write();
    assert_eq!(all.len() as u64, 256 * MIB);
    // Each thread fills its own 24 MiB span, one byte in every 512, starting
    // 1 MiB in: every span lies past the 4 KiB the state had.
    let (_, rest) = all.split_at_mut(MIB as usize);
    std::thread::scope(|s| {
        let mut rest = rest;
        for i in 0..THREADS {
            let (mine, tail) = rest.split_at_mut(SPAN as usize);
            rest = tail;
            s.spawn(move || {
                let base = MIB + i * SPAN;
                for k in (0..SPAN).step_by(512) {
                    mine[k as usize] = pattern(base + k);
                }
            });
        }
    });
    let end = MIB + THREADS * SPAN;
    let seq = t.commit().unwrap();
    assert_eq!(
        w.len(),
        end,
        "the length is the end of the last page written"
    );
    let check = |bytes: &[u8]| {
        assert_eq!(bytes.len() as u64, end);
        assert_eq!(&bytes[..4], b"head");
        for off in (MIB..end).step_by(512) {
            assert_eq!(bytes[off as usize], pattern(off), "byte at {off}");
        }
        assert!(bytes[4..MIB as usize].iter().all(|&b| b == 0));
    };
    let (s, bytes) = read_all(&p, &o);
    assert_eq!(s, seq);
    check(&bytes);
    w.close().unwrap();
    // And after a reopen (from the durable image written at close).
    let live = d.path().join("shm");
    std::fs::remove_dir_all(&live).unwrap();
    std::fs::create_dir(&live).unwrap();
    let (s, bytes) = read_all(&p, &o);
    assert_eq!(s, seq);
    check(&bytes);
}

#[test]
fn reads_past_the_end_are_zero_and_do_not_grow() {
    let (_d, p, o) = setup(64 * MIB);
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    let all = t.extend_on_write();
    let far = (40 * MIB) as usize;
    assert_eq!(all[far], 0);
    assert!(all[far..far + 3 * PAGE as usize].iter().all(|&b| b == 0));
    t.commit().unwrap();
    assert_eq!(w.len(), PAGE, "reads alone do not change the length");

    // A store in the last page of the current length keeps it.
    let mut t = w.begin();
    t.extend_on_write()[100] = 7;
    t.commit().unwrap();
    assert_eq!(w.len(), PAGE);

    // set_len fixes the length even with extend-on-write stores past it.
    let mut t = w.begin();
    t.set_len(2 * PAGE).unwrap();
    let all = t.extend_on_write();
    all[(3 * PAGE) as usize] = 1;
    all[100] = 8;
    t.commit().unwrap();
    assert_eq!(w.len(), 2 * PAGE);
    let (_, bytes) = read_all(&p, &o);
    assert_eq!(bytes.len() as u64, 2 * PAGE);
    assert_eq!(bytes[100], 8);
}

#[test]
fn an_aborted_growth_leaves_nothing() {
    let (_d, p, o) = setup(64 * MIB);
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    t.extend_on_write()[(5 * MIB) as usize] = 9;
    drop(t);
    assert_eq!(w.len(), PAGE);
    let mut t = w.begin();
    assert_eq!(t.extend_on_write()[(5 * MIB) as usize], 0);
    t.commit().unwrap();
    assert_eq!(w.len(), PAGE);
    assert_eq!(read_all(&p, &o).1.len() as u64, PAGE);
}

#[test]
fn a_store_past_the_maximum_fails_the_commit() {
    let max = 2 * MIB;
    let (_d, p, o) = setup(max);
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    t.write_at(0, b"kept").unwrap();
    t.commit().unwrap();

    let mut t = w.begin();
    let all = t.extend_on_write();
    all[(MIB) as usize] = 1;
    let base = all.as_mut_ptr();
    // Past the slice: the guard just after the maximum size. Through a raw
    // pointer, as a C program would.
    // SAFETY: the guard page is part of the writer's reservation; the
    // handler maps a scratch page there, so the store completes.
    unsafe { base.wrapping_add((max + 100) as usize).write_volatile(5) };
    match t.commit() {
        Err(Error::PastMaximum { offset, max: m, .. }) => {
            assert_eq!(m, max);
            assert_eq!(offset, max + 100);
        }
        other => panic!("expected PastMaximum, got {other:?}"),
    }
    assert_eq!(w.len(), PAGE);
    // The writer is usable again, and nothing of the failed transaction shows.
    let mut t = w.begin();
    assert_eq!(t.extend_on_write()[MIB as usize], 0);
    t.extend_on_write()[(MIB + 1) as usize] = 2;
    t.commit().unwrap();
    assert_eq!(w.len(), MIB + PAGE);
    let (_, bytes) = read_all(&p, &o);
    assert_eq!(&bytes[..4], b"kept");
    assert_eq!(bytes[MIB as usize], 0);
    assert_eq!(bytes[(MIB + 1) as usize], 2);
}

#[test]
fn a_full_live_filesystem_fails_the_commit_and_keeps_earlier_ones() {
    const T: &str = "a_full_live_filesystem_fails_the_commit_and_keeps_earlier_ones";
    if !is_root() {
        return skip(T, "mounting a tmpfs needs root");
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let live = dir.path().join("small");
    let _m = match Mount::new(&["-t", "tmpfs", "-o", "size=1m", "tmpfs"], &live) {
        Ok(m) => m,
        Err(e) => return skip(T, &e),
    };
    no_tracking_if_asked();
    let p = dir.path().join("state");
    let o = opts(&live, 64 * MIB);
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    let all = t.extend_on_write();
    for off in (0..256 * 1024).step_by(PAGE as usize) {
        all[off] = pattern(off as u64);
    }
    let first = t.commit().unwrap();
    assert_eq!(w.len(), 256 * 1024);

    // 4 MiB cannot fit in a 1 MiB tmpfs: the store past what fits lands in
    // scratch (no SIGBUS) and the commit says why.
    let mut t = w.begin();
    let all = t.extend_on_write();
    for off in (0..4 * MIB as usize).step_by(PAGE as usize) {
        all[off] = 0xee;
    }
    match t.commit() {
        Err(e @ Error::NoSpace { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("ENOSPC"), "{msg}");
            assert!(msg.contains(&live.display().to_string()), "{msg}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert_eq!(w.seq(), first);
    let (s, bytes) = read_all(&p, &o);
    assert_eq!(s, first);
    assert_eq!(bytes.len(), 256 * 1024);
    for off in (0..256 * 1024).step_by(PAGE as usize) {
        assert_eq!(bytes[off], pattern(off as u64), "committed byte at {off}");
    }
    // A commit that fits still works.
    let mut t = w.begin();
    t.write_at(1, b"after").unwrap();
    t.commit().unwrap();
    w.close().unwrap();
    let (_, bytes) = read_all(&p, &o);
    assert_eq!(&bytes[1..6], b"after");
    assert_eq!(bytes[PAGE as usize], pattern(PAGE));
}

#[test]
fn a_full_state_filesystem_fails_the_commit_and_keeps_earlier_ones() {
    const T: &str = "a_full_state_filesystem_fails_the_commit_and_keeps_earlier_ones";
    if !is_root() {
        return skip(T, "mounting a loop ext4 needs root");
    }
    let Some(mkfs) = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        return skip(T, "mkfs.ext4 not found (package e2fsprogs)");
    };
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 * MIB)
        .unwrap();
    let ok = Command::new(mkfs)
        .args(["-q", "-F", "-O", "^has_journal"])
        .arg(&img)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfs.ext4 failed");
    let mnt = dir.path().join("mnt");
    let _m = match Mount::new(&["-o", "loop", img.to_str().unwrap()], &mnt) {
        Ok(m) => m,
        Err(e) => return skip(T, &e),
    };
    no_tracking_if_asked();
    let p = mnt.join("state");
    let live = dir.path().join("shm");
    std::fs::create_dir(&live).unwrap();
    let o = opts(&live, 256 * MIB).log_size(2 * MIB);
    let mut w = o.open(&p).unwrap();
    let mut committed = 0u64;
    let mut err = None;
    // Grow by 2 MiB a commit until the 16 MiB filesystem is full.
    for round in 0..16u64 {
        let mut t = w.begin();
        let all = t.extend_on_write();
        let from = committed;
        for off in (from..from + 2 * MIB).step_by(PAGE as usize) {
            all[off as usize] = pattern(off ^ round);
        }
        match t.commit() {
            Ok(_) => committed += 2 * MIB,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("a 16 MiB filesystem cannot hold 32 MiB");
    assert!(
        matches!(err, Error::NoSpace { .. }),
        "expected NoSpace, got {err:?}: {err}"
    );
    assert!(committed > 0);
    drop(w);
    // Everything committed before is there, from the files alone.
    std::fs::remove_dir_all(&live).unwrap();
    std::fs::create_dir(&live).unwrap();
    let (_, bytes) = read_all(&p, &o);
    assert_eq!(bytes.len() as u64, committed);
    for (round, from) in (0..committed).step_by(2 * MIB as usize).enumerate() {
        for off in (from..from + 2 * MIB).step_by(PAGE as usize) {
            assert_eq!(bytes[off as usize], pattern(off ^ round as u64));
        }
    }
}

/// A fault outside every growable region still kills with SIGSEGV, with a
/// growable region registered (a writer open) in the same process; and a
/// handler installed before mapstate still gets its faults.
#[test]
fn a_null_dereference_elsewhere_still_dies_with_sigsegv() {
    const T: &str = "a_null_dereference_elsewhere_still_dies_with_sigsegv";
    let role = std::env::var(ROLE).unwrap_or_default();
    if role == "previous" {
        extern "C" fn previous(_: libc::c_int) {
            // SAFETY: `_exit` is async-signal-safe and never returns.
            unsafe { libc::_exit(42) };
        }
        // SAFETY: a zeroed sigaction is valid (SIG_DFL, empty mask); the
        // handler is an `extern "C" fn(c_int)`, as `sa_handler` expects.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = previous as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: installs a handler that only calls `_exit`.
        unsafe { libc::sigaction(libc::SIGSEGV, &raw const act, std::ptr::null_mut()) };
    }
    if !role.is_empty() {
        let (_d, p, o) = setup(64 * MIB);
        let mut w = o.open(&p).unwrap();
        let mut t = w.begin();
        t.extend_on_write()[(3 * MIB) as usize] = 1;
        t.commit().unwrap();
        // SAFETY: deliberately faults (the point of this child).
        let v = unsafe { std::ptr::read_volatile(std::ptr::null::<u8>().wrapping_add(16)) };
        println!("survived a null dereference: {v}");
        std::process::exit(0);
    }
    let run = |role: &str| {
        Command::new(std::env::current_exe().unwrap())
            .args([T, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .status()
            .unwrap()
    };
    let st = run("default");
    assert_eq!(st.signal(), Some(libc::SIGSEGV), "child ended with {st:?}");
    let st = run("previous");
    assert_eq!(
        st.code(),
        Some(42),
        "the handler installed before mapstate did not run: {st:?}"
    );
}

/// The same tests where the kernel cannot track writes (before Linux 6.7):
/// the extent written is then found by comparing pages.
#[test]
fn every_test_again_without_write_tracking() {
    if std::env::var_os(NO_TRACKING).is_some() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--skip", "every_test_again", "--test-threads=2"])
        .env(NO_TRACKING, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("test result: ok. 14 passed"), "{text}");
}

// ---------------------------------------------------------------------------
// `Mapping` with extend-on-write: the AIX `shmat(SHM_MAP)` model.

fn attach(path: &Path, max: u64) -> mapstate::Mapping {
    mapstate::MapOptions::new()
        .create(true)
        .max_size(max)
        .extend_on_write(true)
        .open(path)
        .unwrap()
}

#[test]
fn attach_store_past_the_end_detach_leaves_the_written_extent() {
    no_tracking_if_asked();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = dir.path().join("aix");
    let mut m = attach(&p, 64 * MIB);
    assert_eq!(m.len(), 0);
    let base = m.as_mut_ptr();
    let at = 3 * MIB + 100;
    for (i, b) in b"past the end".iter().enumerate() {
        // SAFETY: inside the reserved maximum size of an extend-on-write
        // mapping: the handler maps the page before the store completes.
        unsafe { base.wrapping_add(at as usize + i).write_volatile(*b) };
    }
    assert!(m.len() >= 3 * MIB + PAGE, "the mapping grew to {}", m.len());
    // A load further out grows the mapping but is no write.
    // SAFETY: inside the maximum size, as above.
    let far = unsafe { base.wrapping_add((5 * MIB) as usize).read_volatile() };
    assert_eq!(far, 0);
    let hw = m.high_water().unwrap();
    assert_eq!(hw, 3 * MIB + PAGE, "page granularity");
    let len = m.detach().unwrap();
    assert_eq!(len, hw);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), len);
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(&bytes[at as usize..at as usize + 12], b"past the end");
    assert!(bytes[..at as usize].iter().all(|&b| b == 0));
}

#[test]
fn a_growable_mapping_grows_from_several_threads_and_by_write_at() {
    no_tracking_if_asked();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = dir.path().join("threads");
    std::fs::write(&p, b"old contents").unwrap();
    let mut m = attach(&p, 128 * MIB);
    assert_eq!(m.len(), 12);
    let base = m.as_mut_ptr() as usize;
    std::thread::scope(|s| {
        for i in 0..4u64 {
            s.spawn(move || {
                let from = MIB + i * 8 * MIB;
                for off in (from..from + 8 * MIB).step_by(1024) {
                    let p = (base as *mut u8).wrapping_add(off as usize);
                    // SAFETY: inside the maximum size; each thread its own span.
                    unsafe { p.write_volatile(pattern(off)) };
                }
            });
        }
    });
    m.write_at(40 * MIB, b"by write_at").unwrap();
    m.check_growth().unwrap();
    let len = m.trim().unwrap();
    assert_eq!(len, 40 * MIB + 11, "write_at sets the exact length");
    drop(m);
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(bytes.len() as u64, len);
    assert_eq!(&bytes[..12], b"old contents");
    for off in (MIB..33 * MIB).step_by(1024) {
        assert_eq!(bytes[off as usize], pattern(off));
    }
    assert_eq!(
        &bytes[(40 * MIB) as usize..(40 * MIB + 11) as usize],
        b"by write_at"
    );
}

/// Plain stores of `data` at `at`, as a C program attached with
/// `mapstate_attach` makes them.
fn store(m: &mut mapstate::Mapping, at: u64, data: &[u8]) {
    let base = m.as_mut_ptr();
    for (i, b) in data.iter().enumerate() {
        // SAFETY: the callers stay inside the maximum size of an
        // extend-on-write mapping: a store past the mapped part is mapped by
        // the handler before it completes.
        unsafe { base.wrapping_add(at as usize + i).write_volatile(*b) };
    }
}

/// A fresh file holding `contents`, attached with extend-on-write.
fn attach_file(dir: &Path, name: &str, contents: &[u8], max: u64) -> (PathBuf, mapstate::Mapping) {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    let m = attach(&p, max);
    assert_eq!(m.len(), contents.len() as u64);
    (p, m)
}

/// The file's bytes: `want` at their offsets, zero everywhere else.
fn assert_file(p: &Path, len: u64, want: &[(u64, &[u8])]) {
    let bytes = std::fs::read(p).unwrap();
    assert_eq!(bytes.len() as u64, len, "the file's length");
    let mut expect = vec![0u8; len as usize];
    for &(at, data) in want {
        expect[at as usize..at as usize + data.len()].copy_from_slice(data);
    }
    if let Some(i) = (0..bytes.len()).find(|&i| bytes[i] != expect[i]) {
        panic!("byte {i} is {:#x}, want {:#x}", bytes[i], expect[i]);
    }
}

/// The page that holds the high-water mark counts once it holds a non-zero
/// byte past the mark: a second `write_at` just past the first one was
/// dropped by `detach` (the scan started at the next page).
#[test]
fn a_write_in_the_page_of_the_high_water_mark_survives_detach() {
    no_tracking_if_asked();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = dir.path().join("two");
    let mut m = attach(&p, 64 * MIB);
    m.write_at(0, b"thirteen byte").unwrap();
    m.write_at(13, b"fourteen bytes").unwrap();
    assert_eq!(m.high_water().unwrap(), PAGE, "page granularity");
    assert_eq!(m.detach().unwrap(), PAGE);
    assert_file(&p, PAGE, &[(0, b"thirteen bytefourteen bytes")]);
}

/// Plain stores past the end of a file whose length is not a whole number
/// of pages, inside its last page (mapped already: no fault, no growth),
/// are kept, also after a flush (writeback zeroes a page's bytes past the
/// file's end). Bytes before the mark, zeros past it and a mark at a page
/// boundary do not move it.
#[test]
fn stores_in_the_last_page_of_an_unaligned_file_survive_detach() {
    no_tracking_if_asked();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let old = *b"thirty-three bytes of old content";
    let tail = *b"forty bytes past the end, in its page!!!";

    // Only the file's own (non-zero) bytes: the length stays.
    let (p, mut m) = attach_file(dir.path(), "kept", &old, 64 * MIB);
    assert_eq!(m.high_water().unwrap(), 33);
    assert_eq!(m.detach().unwrap(), 33);
    assert_file(&p, 33, &[(0, &old)]);

    // Zeros past the end, and a load further out, change nothing.
    let (p, mut m) = attach_file(dir.path(), "zeros", &old, 64 * MIB);
    store(&mut m, 33, &[0; 100]);
    // SAFETY: inside the maximum size; the handler maps the page.
    let far = unsafe { m.as_ptr().wrapping_add(2 * PAGE as usize).read_volatile() };
    assert_eq!(far, 0);
    m.flush().unwrap();
    assert_eq!(m.high_water().unwrap(), 33);
    assert_eq!(m.detach().unwrap(), 33);
    assert_file(&p, 33, &[(0, &old)]);

    // The reported case: 40 bytes at 33.
    let (p, mut m) = attach_file(dir.path(), "tail", &old, 64 * MIB);
    store(&mut m, 33, &tail);
    m.flush().unwrap();
    // Read through the pointer: the part of the page past the file's end
    // is no part of `len` until the mark is found.
    // SAFETY: inside the first page, mapped since the open.
    let back: Vec<u8> = (33..73)
        .map(|i| unsafe { m.as_ptr().wrapping_add(i).read_volatile() })
        .collect();
    assert_eq!(back, tail, "a flush kept the stores");
    assert_eq!(m.high_water().unwrap(), PAGE);
    assert_eq!(m.detach().unwrap(), PAGE);
    assert_file(&p, PAGE, &[(0, &old), (33, &tail)]);

    // The last byte of the page, then a store ending at the next page's
    // end, then one byte at a page boundary.
    let (p, mut m) = attach_file(dir.path(), "edges", &old, 64 * MIB);
    store(&mut m, PAGE - 1, b"x");
    assert_eq!(m.high_water().unwrap(), PAGE);
    store(&mut m, 2 * PAGE - 4, b"four");
    assert_eq!(m.high_water().unwrap(), 2 * PAGE);
    assert_eq!(
        m.high_water().unwrap(),
        2 * PAGE,
        "a mark at a boundary stays"
    );
    store(&mut m, 2 * PAGE, b"y");
    assert_eq!(m.high_water().unwrap(), 3 * PAGE);
    assert_eq!(m.detach().unwrap(), 3 * PAGE);
    assert_file(
        &p,
        3 * PAGE,
        &[
            (0, &old),
            (PAGE - 1, b"x"),
            (2 * PAGE - 4, b"four"),
            (2 * PAGE, b"y"),
        ],
    );

    // A maximum size that is not a whole number of pages caps the mark.
    let (p, mut m) = attach_file(dir.path(), "capped", &old, PAGE + 904);
    store(&mut m, PAGE + 903, b"z");
    assert_eq!(m.high_water().unwrap(), PAGE + 904);
    assert_eq!(m.detach().unwrap(), PAGE + 904);
    assert_file(&p, PAGE + 904, &[(0, &old), (PAGE + 903, b"z")]);
}

/// A length set by `grow_to` or `shrink_to` is the mark; stores past it in
/// its page count, and the file holds them: it covers that page even when
/// the length was set inside the page mapped already (`grow_to` left the
/// file shorter, and `detach` returned a length the file did not have).
#[test]
fn the_mark_set_by_grow_to_and_shrink_to_counts_the_rest_of_its_page() {
    no_tracking_if_asked();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let old = *b"thirty-three bytes of old content";

    // grow_to inside the page mapped at open, a store below the new length.
    let (p, mut m) = attach_file(dir.path(), "inside", &old, 64 * MIB);
    m.grow_to(100).unwrap();
    assert_eq!(m.len(), 100);
    store(&mut m, 50, b"q");
    m.flush().unwrap();
    assert_eq!(m.high_water().unwrap(), 100, "an explicit length is exact");
    // trim to a mark inside a page, then write_at past it: the file grows
    // over the rest of the page again.
    assert_eq!(m.trim().unwrap(), 100);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 100);
    m.write_at(150, b"w").unwrap();
    m.flush().unwrap();
    assert_eq!(m.high_water().unwrap(), 151);
    assert_eq!(m.detach().unwrap(), 151);
    assert_file(&p, 151, &[(0, &old), (50, b"q"), (150, b"w")]);

    // grow_to into a new page, then a store past it in that page.
    let p = dir.path().join("grown");
    let mut m = attach(&p, 64 * MIB);
    m.grow_to(5000).unwrap();
    assert_eq!(m.high_water().unwrap(), 5000);
    m.write_at(3000, b"cut by the shrink").unwrap();
    store(&mut m, 5000, b"past the set length");
    assert_eq!(m.high_water().unwrap(), 2 * PAGE);

    // shrink_to: the mark comes down with it, the bytes past it are gone,
    // and a store past it in its page counts again.
    m.shrink_to(100).unwrap();
    assert_eq!(m.len(), 100);
    assert_eq!(m.high_water().unwrap(), 100);
    store(&mut m, 200, b"after the shrink");
    m.flush().unwrap();
    assert_eq!(m.high_water().unwrap(), PAGE);
    assert_eq!(m.trim().unwrap(), PAGE);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), PAGE);
    store(&mut m, PAGE + 7, b"after the trim");
    assert_eq!(m.detach().unwrap(), 2 * PAGE);
    assert_file(
        &p,
        2 * PAGE,
        &[(200, b"after the shrink"), (PAGE + 7, b"after the trim")],
    );
}

#[test]
fn a_growable_mapping_on_a_full_filesystem_reports_no_space() {
    const T: &str = "a_growable_mapping_on_a_full_filesystem_reports_no_space";
    if !is_root() {
        return skip(T, "mounting a tmpfs needs root");
    }
    no_tracking_if_asked();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let mnt = dir.path().join("small");
    let _mount = match Mount::new(&["-t", "tmpfs", "-o", "size=1m", "tmpfs"], &mnt) {
        Ok(m) => m,
        Err(e) => return skip(T, &e),
    };
    let p = mnt.join("full");
    let mut m = attach(&p, 64 * MIB);
    m.write_at(0, b"first").unwrap();
    m.flush().unwrap();
    let base = m.as_mut_ptr();
    for off in (0..4 * MIB).step_by(PAGE as usize) {
        // SAFETY: inside the maximum size; past what fits, the store lands in
        // a scratch page.
        unsafe { base.wrapping_add(off as usize + 8).write_volatile(0xee) };
    }
    match m.check_growth() {
        Err(e @ Error::NoSpace { .. }) => assert!(e.to_string().contains("ENOSPC"), "{e}"),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    let mut five = [0u8; 5];
    m.read_at(0, &mut five).unwrap();
    assert_eq!(&five, b"first");
    assert!(m.len() <= MIB, "the file fits the filesystem: {}", m.len());
}

/// A reader's mapping follows the writer's growth: its raw pointer reaches
/// bytes a later commit added, with no call in between.
#[test]
fn a_readers_pointer_reaches_what_later_commits_added() {
    let (_d, p, o) = setup(256 * MIB);
    let mut w = o.open(&p).unwrap();
    let r = o.reader().open(&p).unwrap();
    let base = r.as_ptr();
    let mut t = w.begin();
    t.extend_on_write()[(100 * MIB) as usize] = 0x5a;
    t.commit().unwrap();
    assert!(w.len() > 100 * MIB);
    // SAFETY: below the state's committed length and its maximum size;
    // the writer is idle (no commit runs), so the byte is stable.
    let b = unsafe { base.wrapping_add((100 * MIB) as usize).read_volatile() };
    assert_eq!(b, 0x5a);
}
