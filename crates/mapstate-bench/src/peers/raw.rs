//! The baselines: what the kernel gives with no library in between.
//!
//! - `raw-fdatasync`: `pwrite` of 4 KiB then `fdatasync`, the floor of a
//!   durable commit (w2, w2x8).
//! - `raw-futex`: a word in a `MAP_SHARED` file, `FUTEX_WAKE` and
//!   `FUTEX_WAIT` across processes (notify).
//! - `raw-pipe`: 8 bytes through a pipe into a blocked `read` (notify).

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::Ordering;

use rustix::io::Errno;
use rustix::thread::futex;

use crate::child::{ChildArgs, Parent, notify_parent, notify_waiter};
use crate::harness::{Ctx, Result, Workload, measure, measure_threads};
use crate::peers::{System, na};
use crate::report::Outcome;
use crate::shm::SharedMap;
use crate::slot::{Rng, SLOT_BYTES, STATE_SLOTS, Slot, fill_slots};

const PAGE: usize = 4096;

/// `pwrite` + `fdatasync`.
pub(crate) struct RawFdatasync;

/// Futex wake and wait on a shared file mapping.
pub(crate) struct RawFutex;

/// A pipe.
pub(crate) struct RawPipe;

const FDATASYNC: &str = "pwrite of the 4 KiB page holding the slot, then fdatasync: the floor of a durable commit on this disk; a crash mid-write can tear the page (no atomicity)";

/// A 1 MiB file of slots in `dir`, written by 4 KiB pwrites.
fn create_file(dir: &std::path::Path) -> Result<File> {
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join("state.bin"))?;
    let mut page = [0_u8; PAGE];
    for p in 0..STATE_SLOTS * SLOT_BYTES / PAGE {
        fill_slots(&mut page, (p * PAGE / SLOT_BYTES) as u64);
        f.write_all_at(&page, (p * PAGE) as u64)?;
    }
    f.sync_all()?;
    Ok(f)
}

/// Puts a fresh slot into a random place of `page`, then writes `page` at
/// `offset` and syncs it.
fn write_sync(f: &File, page: &mut [u8; PAGE], offset: u64, rng: &mut Rng) -> Result<()> {
    let k = rng.below(PAGE / SLOT_BYTES) * SLOT_BYTES;
    page[k..k + SLOT_BYTES].copy_from_slice(&Slot::fill(rng.next_u64()).to_bytes());
    f.write_all_at(page, offset)?;
    f.sync_data()?;
    Ok(())
}

impl System for RawFdatasync {
    fn name(&self) -> &'static str {
        "raw-fdatasync"
    }

    fn run(&self, workload: Workload, cx: &Ctx) -> Result<Outcome> {
        let m = match workload {
            Workload::W2 => {
                let dir = cx.tempdir()?;
                let f = create_file(dir.path())?;
                let mut rng = Rng::from_entropy();
                let mut page = [0_u8; PAGE];
                fill_slots(&mut page, 0);
                let pages = STATE_SLOTS * SLOT_BYTES / PAGE;
                let mut m = measure(&cx.params, || {
                    let offset = (rng.below(pages) * PAGE) as u64;
                    write_sync(&f, &mut page, offset, &mut rng)
                })?;
                m.notes = String::from(FDATASYNC);
                m
            }
            Workload::W2x8 => {
                let dir = cx.tempdir()?;
                let f = create_file(dir.path())?;
                let mut m = measure_threads(&cx.params, 8, |i| {
                    let mut rng = Rng::new(i as u64 + 1);
                    let mut page = [0_u8; PAGE];
                    fill_slots(&mut page, 0);
                    let f = &f;
                    Ok(move || write_sync(f, &mut page, (i * PAGE) as u64, &mut rng))
                })?;
                m.notes =
                    format!("8 threads, each on its own 4 KiB block of one file; {FDATASYNC}");
                m
            }
            _ => return Ok(na("durable-write baseline: w2 and w2x8 only")),
        };
        Ok(Outcome::Measured(m))
    }
}

/// Byte offset of the futex word (a sequence number) in the shared file.
const SEQ: usize = 0;
/// Word index of `t0` in the shared file (byte 64: another cache line).
const T0: usize = 8;

impl System for RawFutex {
    fn name(&self) -> &'static str {
        "raw-futex"
    }

    fn run(&self, workload: Workload, cx: &Ctx) -> Result<Outcome> {
        if workload != Workload::Notify {
            return Ok(na("notification baseline: notify only"));
        }
        let dir = cx.tempdir()?;
        let path = dir.path().join("futex.bin");
        File::create(&path)?.set_len(PAGE as u64)?;
        let shared = SharedMap::open(&path)?;
        let (seq, t0_word) = (shared.u32_at(SEQ), &shared.words()[T0]);
        let mut m = notify_parent(cx, self.name(), dir.path(), |_, t0| {
            t0_word.store(t0, Ordering::Relaxed);
            seq.fetch_add(1, Ordering::Release);
            futex::wake(seq, futex::Flags::empty(), 1)?;
            Ok(())
        })?;
        m.notes = String::from(
            "push baseline: the writer stores t0 into a MAP_SHARED file on ext4, bumps a word of it and calls FUTEX_WAKE (shared: no FUTEX_PRIVATE_FLAG); the waiter process sleeps in FUTEX_WAIT on its own map of the file",
        );
        Ok(Outcome::Measured(m))
    }

    fn child(&self, args: &ChildArgs) -> Result<()> {
        let shared = SharedMap::open(&args.dir.join("futex.bin"))?;
        let (seq, t0_word) = (shared.u32_at(SEQ), &shared.words()[T0]);
        let mut last = seq.load(Ordering::Acquire);
        notify_waiter(Parent::new(), args.arg, |_| {
            loop {
                let now = seq.load(Ordering::Acquire);
                if now != last {
                    last = now;
                    return Ok(t0_word.load(Ordering::Relaxed));
                }
                match futex::wait(seq, futex::Flags::empty(), now, None) {
                    Ok(()) | Err(Errno::AGAIN | Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }
}

impl System for RawPipe {
    fn name(&self) -> &'static str {
        "raw-pipe"
    }

    fn run(&self, workload: Workload, cx: &Ctx) -> Result<Outcome> {
        if workload != Workload::Notify {
            return Ok(na("notification baseline: notify only"));
        }
        let dir = cx.tempdir()?;
        let mut m = notify_parent(cx, self.name(), dir.path(), |waiter, t0| {
            waiter.send_bytes(&t0.to_le_bytes())
        })?;
        m.notes = String::from(
            "push baseline: the writer writes t0 (8 bytes) into a pipe; the waiter process sleeps in read()",
        );
        Ok(Outcome::Measured(m))
    }

    fn child(&self, args: &ChildArgs) -> Result<()> {
        notify_waiter(Parent::new(), args.arg, |parent| {
            let mut b = [0_u8; 8];
            parent.read_exact(&mut b)?;
            Ok(u64::from_le_bytes(b))
        })
    }
}
