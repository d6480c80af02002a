//! memmap2: plain stores into a `MAP_SHARED` file, no synchronisation, no
//! commit. The no-safety ceiling.
//!
//! # Safety
//!
//! memmap2 marks `MmapMut::map_mut`, `Mmap::map` and `remap` unsafe because
//! the `&[u8]` a map derefs to would be undefined behaviour if the file
//! changed behind it (another process, or a truncation). The in-process
//! workloads map files that this process created in its own run directory
//! and that nothing else opens while they are mapped; they truncate a file
//! only after dropping its map. The cross-process workloads (w2x8, w5,
//! notify, the reopen writer) use [`SharedMap`] instead, which is seen only
//! through atomics.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use memmap2::{Mmap, MmapMut, RemapOptions};
use rustix::fs::{FallocateFlags, fallocate};

use crate::child::{
    ChildArgs, Pace, Parent, notify_parent, notify_waiter, poller, reopen_parent,
    timed_commit_loop, timed_loop, w5_parent, write_until_killed,
};
use crate::harness::{
    Ctx, DiskWrites, MIB, Result, Workload, disk_bytes, measure, measure_threads, nanos,
};
use crate::peers::{
    APPEND_RECORD, CHECKED, Fill, System, append_records, footprint, grow_figures, mapstate_only,
};
use crate::report::{Measurement, Outcome};
use crate::shm::SharedMap;
use crate::slot::{Rng, SLOT_BYTES, SLOT_WORDS, STATE_SLOTS, Slot, fill_slots};

/// memmap2.
pub(crate) struct Memmap2;

const PAGE: usize = 4096;

const NO_ATOMICITY: &str = "no commit and no atomicity: stores reach the page cache at once, so they survive a process crash, but a crash mid-store leaves a torn slot; an OS crash loses unsynced stores and can tear slots";

/// The state file in `dir`.
fn path(dir: &Path) -> std::path::PathBuf {
    dir.join("state.bin")
}

/// Creates the file at `path` holding `bytes` of slots, written with
/// `pwrite`s of `chunk` bytes (4 KiB for the durable workloads: their page
/// cache then has 4 KiB folios, so msync of a page writes one page).
fn create_file(path: &Path, bytes: u64, chunk: usize) -> Result<File> {
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let mut buf = vec![0_u8; chunk];
    let mut off = 0;
    while off < bytes {
        fill_slots(&mut buf, off / SLOT_BYTES as u64);
        f.write_all_at(&buf, off)?;
        off += chunk as u64;
    }
    Ok(f)
}

/// Maps all of `file` read-write.
fn map(file: &File) -> Result<MmapMut> {
    // SAFETY: `file` was created by this process in its run directory and
    // nothing else opens it while this map lives (module docs).
    let m = unsafe { MmapMut::map_mut(file)? };
    Ok(m)
}

/// Stores a fresh slot at `k` (slot index) in `m`.
fn store(m: &mut [u8], k: usize, rng: &mut Rng) {
    m[k * SLOT_BYTES..(k + 1) * SLOT_BYTES].copy_from_slice(&Slot::fill(rng.next_u64()).to_bytes());
}

/// Stores a fresh slot at `k` into the shared words.
fn store_shared(words: &[std::sync::atomic::AtomicU64], k: usize, rng: &mut Rng) {
    Slot::fill(rng.next_u64()).store(&words[k * SLOT_WORDS..(k + 1) * SLOT_WORDS]);
}

fn w6(cx: &Ctx) -> Result<Measurement> {
    let dir = cx.tempdir()?;
    let io = DiskWrites::start()?;
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path(dir.path()))?;
    let recs = append_records();
    let total = cx.params.w6_bytes;
    let n = total / APPEND_RECORD as u64;
    let t = Instant::now();
    let mut len = MIB as usize;
    f.set_len(len as u64)?;
    let mut m = map(&f)?;
    for i in 0..n as usize {
        let off = i * APPEND_RECORD;
        if off + APPEND_RECORD > len {
            len *= 2;
            f.set_len(len as u64)?;
            // SAFETY: the file was just grown to `len`; this process alone
            // has it open (module docs), and the old slice is not borrowed.
            unsafe { m.remap(len, RemapOptions::new().may_move(true))? };
        }
        m[off..off + APPEND_RECORD].copy_from_slice(&recs[i % 16]);
    }
    drop(m);
    f.set_len(total)?;
    let secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    drop(f);
    let close_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut m = Measurement {
        ops_per_sec: Some(n as f64 / secs),
        mb_per_sec: Some(total as f64 / secs / 1e6),
        notes: format!(
            "NO COMMITS, NO CRASH SAFETY (plain stores, the no-safety ceiling): growth by hand: the file doubles from 1 MiB (ftruncate: sparse, so a full disk would be SIGBUS at a store) and the map follows by mremap(MAYMOVE), moving its address; truncated to the data at the end (in the time); no sync; {}; disk_bytes after closing; disk writes from the create to after the close",
            cx.params.size_note(|p| p.w6_bytes)
        ),
        ..Measurement::default()
    };
    m.set(crate::report::key::CLOSE_MS, close_ms);
    io.finish(total, &mut m)?;
    footprint(&mut m, disk_bytes(dir.path())?, total);
    Ok(m)
}

/// Fills `total` bytes page by page, timing each page's first touch. With
/// `chunk` set, the file starts at one chunk and grows by `fallocate` plus
/// `mremap` whenever the writer reaches its end (the growth is timed with
/// the page that needed it); without, it is sized whole first with
/// `ftruncate`, the usual way (a file `fallocate`d whole first filled at
/// about half that speed here: its faults zero large readahead folios).
fn fill(path: &Path, total: u64, chunk: Option<u64>) -> Result<Fill> {
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let mut len = chunk.unwrap_or(total);
    if chunk.is_some() {
        fallocate(&f, FallocateFlags::empty(), 0, len)?;
    } else {
        f.set_len(len)?;
    }
    let mut m = map(&f)?;
    let mut page = [0_u8; PAGE];
    fill_slots(&mut page, 0);
    let pages = (total / PAGE as u64) as usize;
    let mut samples = Vec::with_capacity(pages);
    let start = Instant::now();
    for p in 0..pages {
        let t = Instant::now();
        let off = p * PAGE;
        if let Some(chunk) = chunk.filter(|_| off as u64 >= len) {
            fallocate(&f, FallocateFlags::empty(), len, chunk)?;
            len += chunk;
            // SAFETY: the file was just extended to `len` by fallocate; this
            // process alone has it open (module docs), and no slice of the
            // old map is borrowed.
            unsafe { m.remap(len as usize, RemapOptions::new().may_move(true))? };
        }
        m[off..off + PAGE].copy_from_slice(&page);
        samples.push(nanos(t.elapsed()));
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((samples, secs))
}

fn grow(cx: &Ctx) -> Result<Measurement> {
    const CHUNK: u64 = 2 * MIB;
    let total = cx.params.grow_bytes;
    grow_figures(
        cx,
        |p| fill(p, total, Some(CHUNK)),
        |p| fill(p, total, None),
        format!(
            "growth by hand: when the writer reaches the end, fallocate 2 MiB more (no SIGBUS on a full disk) and mremap(MAYMOVE) (the address moves); pre-sized: the whole file sized first by ftruncate (sparse); per 4 KiB page: first touch (write fault) plus a 4 KiB copy, a growth counted in the page that needed it; ops/s is pages/s; {}",
            cx.params.size_note(|p| p.grow_bytes)
        ),
    )
}

fn reopen(cx: &Ctx) -> Result<Measurement> {
    let dir = cx.kept_dir("memmap2", Workload::Reopen)?;
    let bytes = cx.params.reopen_bytes;
    let done = dir.join("populated");
    if !done.exists() {
        let _ = std::fs::remove_file(path(&dir));
        drop(create_file(&path(&dir), bytes, MIB as usize)?);
        std::fs::write(&done, b"")?;
    }
    let slots = (bytes / SLOT_BYTES as u64) as usize;
    let mut rng = Rng::from_entropy();
    let mut opened = None;
    let mut m = reopen_parent(cx, "memmap2", &dir, || {
        let f = File::open(path(&dir))?;
        // SAFETY: the writer child is dead (reaped) and nothing else opens
        // the file while this read-only map lives (module docs).
        let m = unsafe { Mmap::map(&f)? };
        let k = rng.below(slots);
        let whole = Slot::check_bytes(&m[k * SLOT_BYTES..]);
        opened = Some(m);
        Ok(whole)
    })?;
    drop(opened);
    m.notes = format!(
        "{} of slots; writer child (plain stores) killed with SIGKILL while storing; timed: open, mmap, read one slot (checksum checked); nothing detects or repairs a slot torn by the kill",
        cx.params.size_note(|p| p.reopen_bytes)
    );
    Ok(m)
}

/// w1, w2 and w3: plain stores into a map of the 1 MiB state (w2: each
/// followed by an msync of its page).
fn stores(cx: &Ctx, workload: Workload) -> Result<Measurement> {
    let p = &cx.params;
    let mut rng = Rng::from_entropy();
    let state_bytes = (STATE_SLOTS * SLOT_BYTES) as u64;
    let dir = cx.tempdir()?;
    let f = create_file(&path(dir.path()), state_bytes, PAGE)?;
    let mut map = map(&f)?;
    let io = (workload != Workload::W2)
        .then(DiskWrites::start)
        .transpose()?;
    let mut m = match workload {
        Workload::W1 => measure(p, || {
            store(&mut map, rng.below(STATE_SLOTS), &mut rng);
            Ok(())
        })?,
        Workload::W2 => measure(p, || {
            let k = rng.below(STATE_SLOTS);
            store(&mut map, k, &mut rng);
            map.flush_range(k * SLOT_BYTES, SLOT_BYTES)?;
            Ok(())
        })?,
        _ => measure(p, || {
            for _ in 0..1000 {
                store(&mut map, rng.below(STATE_SLOTS), &mut rng);
            }
            Ok(())
        })?,
    };
    m.notes = match workload {
        Workload::W2 => format!(
            "store, then msync(MS_SYNC) of the slot's page (flush_range): the store is on disk when it returns, but {NO_ATOMICITY}; the file was written by 4 KiB pwrites, so msync writes 4 KiB folios (a file filled through the map gets large folios and msync then writes up to 1 MiB per page, platform notes §7)"
        ),
        Workload::W3 => format!("1,000 plain stores; {NO_ATOMICITY}"),
        _ => format!("plain 64 B stores into a MAP_SHARED map; {NO_ATOMICITY}"),
    };
    if let Some(io) = io {
        drop(map);
        drop(f);
        let per_call = if workload == Workload::W3 { 1000 } else { 1 };
        let payload = m.calls.unwrap_or(0) * (per_call * SLOT_BYTES) as u64;
        io.finish(payload, &mut m)?;
        m.notes.push_str(
            "; disk writes: the stores (a page is charged when it first becomes dirty), then unmap and close",
        );
    }
    Ok(m)
}

impl System for Memmap2 {
    fn name(&self) -> &'static str {
        "memmap2"
    }

    fn run(&self, workload: Workload, cx: &Ctx) -> Result<Outcome> {
        let p = &cx.params;
        let mut rng = Rng::from_entropy();
        let state_bytes = (STATE_SLOTS * SLOT_BYTES) as u64;
        let m = match workload {
            Workload::W1 | Workload::W2 | Workload::W3 => stores(cx, workload)?,
            Workload::W2x8 => {
                let dir = cx.tempdir()?;
                drop(create_file(&path(dir.path()), state_bytes, PAGE)?);
                let shared = SharedMap::open(&path(dir.path()))?;
                let per_thread = STATE_SLOTS / 8;
                let mut m = measure_threads(p, 8, |i| {
                    let mut rng = Rng::new(i as u64 + 1);
                    let shared = &shared;
                    Ok(move || {
                        let k = i * per_thread + rng.below(per_thread);
                        store_shared(shared.words(), k, &mut rng);
                        shared.flush_range(k * SLOT_BYTES, SLOT_BYTES)
                    })
                })?;
                m.notes = format!(
                    "8 threads, each storing into its own eighth of the slots (disjoint, so nothing to coordinate), then msync(MS_SYNC) of that page; {NO_ATOMICITY}"
                );
                m
            }
            Workload::W4 => {
                let dir = cx.tempdir()?;
                let f = create_file(&path(dir.path()), state_bytes, PAGE)?;
                let map = map(&f)?;
                let mut torn = 0_u64;
                let mut m = measure(p, || {
                    let k = rng.below(STATE_SLOTS);
                    torn += u64::from(!Slot::check_bytes(&map[k * SLOT_BYTES..]));
                    Ok(())
                })?;
                m.torn = Some(torn);
                m.notes = format!(
                    "a plain 64 B load: consistent here only because nothing writes concurrently; {CHECKED}"
                );
                m
            }
            Workload::W5 => {
                let dir = cx.tempdir()?;
                drop(create_file(&path(dir.path()), state_bytes, PAGE)?);
                let mut m = w5_parent(cx, self.name(), dir.path())?;
                m.notes = format!(
                    "writer process: plain stores into random slots (no commits); reader process: plain loads, no synchronisation; {CHECKED}, so torn reads are expected; commit_p999_us and commit_max_us: a batch of 64 stores, timed by one clock read per batch (a store costs less than a clock read); the longest includes any preemption of the writer"
                );
                m
            }
            Workload::Notify => {
                let dir = cx.tempdir()?;
                drop(create_file(&path(dir.path()), state_bytes, PAGE)?);
                let shared = SharedMap::open(&path(dir.path()))?;
                let mut m = notify_parent(cx, self.name(), dir.path(), |_, t0| {
                    Slot::fill(t0).store(&shared.words()[..SLOT_WORDS]);
                    Ok(())
                })?;
                m.notes = String::from(
                    "no notification: the waiter process polls slot 0 every 1 ms; the writer stores t0 into it",
                );
                m
            }
            Workload::W6 => w6(cx)?,
            Workload::Grow => grow(cx)?,
            Workload::Reopen => reopen(cx)?,
            Workload::Freestore | Workload::Create | Workload::Checkpoint => {
                return Ok(mapstate_only(workload));
            }
        };
        Ok(Outcome::Measured(m))
    }

    fn child(&self, args: &ChildArgs) -> Result<()> {
        let parent = Parent::new();
        let mut rng = Rng::from_entropy();
        let shared = SharedMap::open(&path(&args.dir))?;
        let words = shared.words();
        let slots = words.len() / SLOT_WORDS;
        match (args.workload, args.role.as_str()) {
            // A store takes a few ns, less than a clock read: timed per
            // batch of 64 stores.
            (Workload::W5, "writer") => timed_commit_loop(parent, Pace::Batched(64), || {
                store_shared(words, rng.below(slots), &mut rng);
                Ok(true)
            }),
            (Workload::W5, "reader") => timed_loop(parent, || {
                let k = rng.below(slots);
                Ok(Slot::load(&words[k * SLOT_WORDS..(k + 1) * SLOT_WORDS]).check())
            }),
            (Workload::Notify, "waiter") => {
                let next = poller(|| Ok(words[0].load(Ordering::Relaxed)))?;
                notify_waiter(parent, args.arg, next)
            }
            (Workload::Reopen, "writer") => write_until_killed(parent, || {
                store_shared(words, rng.below(slots), &mut rng);
                Ok(())
            }),
            _ => Err(format!(
                "memmap2: no child {} for {}",
                args.role,
                args.workload.name()
            )
            .into()),
        }
    }
}
