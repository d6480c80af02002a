//! mmap-sync (Cloudflare): one writer replaces a whole rkyv entity, which
//! readers in any process see wait-free through two data files and a
//! version word. The entity here is the state as one byte vector.
//!
//! # Safety
//!
//! `Synchronizer::read` is `unsafe`: the result must be dropped before the
//! writer's grace period (1 s here) runs out, and with `check_bytes` off the
//! bytes must be a valid archive of the type read. Every read here drops
//! its result within the same call, microseconds later, and the files are
//! written only by this module's writers, always with [`State`].
#![allow(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use bytecheck::CheckBytes;
use mmap_sync::synchronizer::Synchronizer;
use rkyv::with::CopyOptimize;
use rkyv::{Archive, Serialize};

use crate::child::{
    CLOCK_IN_RATE, COMMITS_TIMED, ChildArgs, Pace, Parent, notify_parent, notify_waiter, poller,
    reopen_parent, timed_commit_loop, timed_loop, w5_parent,
};
use crate::harness::{Ctx, DiskWrites, Result, Workload, measure};
use crate::peers::{CHECKED, System, mapstate_only, na};
use crate::report::{Measurement, Outcome};
use crate::slot::{Rng, SLOT_BYTES, STATE_SLOTS, Slot, fill_slots};

/// mmap-sync.
pub(crate) struct MmapSync;

/// The shared entity: the whole state.
#[derive(Archive, Serialize)]
#[archive_attr(derive(CheckBytes))]
pub(crate) struct State {
    /// The slots, back to back. `CopyOptimize` (rkyv's documented fast path
    /// for vectors of plain bytes) serialises them with one copy instead of
    /// one call per byte, which made a 1 MiB write about 10 ms.
    #[with(CopyOptimize)]
    pub(crate) bytes: Vec<u8>,
}

/// How long the writer waits for readers of the copy it wants to reuse
/// (the value of mmap-sync's writer example).
const GRACE: Duration = Duration::from_secs(1);

const WRITE: &str = "each commit is Synchronizer::write of the whole state (rkyv-serialised, copied into the idle one of two data files, which is msync'd, then the version word in the state file is switched); survives a process crash (the previous version stays whole); the state file is never synced, so an OS crash can lose or misdirect the switch";

/// The synchronizer for the files in `dir`.
fn open(dir: &Path) -> Synchronizer {
    Synchronizer::new(dir.join("state").as_os_str())
}

/// A state of `bytes` bytes of slots.
fn initial(bytes: usize) -> State {
    let mut state = State {
        bytes: vec![0; bytes],
    };
    fill_slots(&mut state.bytes, 0);
    state
}

/// Writes the initial 1 MiB state into `dir`; returns the writer.
fn create_state(dir: &Path, bytes: usize) -> Result<(Synchronizer, State)> {
    let mut sync = open(dir);
    let state = initial(bytes);
    sync.write(&state, GRACE)?;
    Ok((sync, state))
}

/// Changes `n` random slots in `state`, then writes it.
fn commit_slots(sync: &mut Synchronizer, state: &mut State, rng: &mut Rng, n: usize) -> Result<()> {
    let slots = state.bytes.len() / SLOT_BYTES;
    for _ in 0..n {
        let k = rng.below(slots) * SLOT_BYTES;
        state.bytes[k..k + SLOT_BYTES].copy_from_slice(&Slot::fill(rng.next_u64()).to_bytes());
    }
    sync.write(&*state, GRACE)?;
    Ok(())
}

/// Reads a random slot; whether it is whole.
fn read_slot(sync: &mut Synchronizer, rng: &mut Rng) -> Result<bool> {
    // SAFETY: the result is dropped at the end of this function, long before
    // the writer's 1 s grace period; the files hold archives of `State`
    // written by this module only (module docs).
    let data = unsafe { sync.read::<State>(false)? };
    let k = rng.below(data.bytes.len() / SLOT_BYTES) * SLOT_BYTES;
    Ok(Slot::check_bytes(&data.bytes[k..]))
}

/// Reads the value of slot 0 (notify).
fn read_value0(sync: &mut Synchronizer) -> Result<u64> {
    // SAFETY: as in `read_slot`.
    let data = unsafe { sync.read::<State>(false)? };
    Ok(Slot::from_bytes(&data.bytes).map_or(0, |s| s.value()))
}

/// A copy of the current state, for a writer that starts from it.
fn read_copy(sync: &mut Synchronizer) -> Result<State> {
    // SAFETY: as in `read_slot`; the bytes are copied out before the result
    // is dropped.
    let data = unsafe { sync.read::<State>(false)? };
    Ok(State {
        bytes: data.bytes.to_vec(),
    })
}

fn reopen(cx: &Ctx) -> Result<Measurement> {
    let dir = cx.kept_dir("mmap-sync", Workload::Reopen)?;
    let bytes = cx.params.reopen_bytes;
    let done = dir.join("populated");
    if !done.exists() {
        drop(create_state(&dir, bytes as usize)?);
        std::fs::write(&done, b"")?;
    }
    let mut rng = Rng::from_entropy();
    let mut opened = None;
    let mut m = reopen_parent(cx, "mmap-sync", &dir, || {
        let mut sync = open(&dir);
        let whole = read_slot(&mut sync, &mut rng)?;
        opened = Some(sync);
        Ok(whole)
    })?;
    drop(opened);
    m.notes = format!(
        "{} state (one entity); writer child (each write rewrites all of it) killed with SIGKILL while writing; timed: Synchronizer::new, read (check_bytes=false) and one slot checked",
        cx.params.size_note(|p| p.reopen_bytes)
    );
    Ok(m)
}

impl System for MmapSync {
    fn name(&self) -> &'static str {
        "mmap-sync"
    }

    fn run(&self, workload: Workload, cx: &Ctx) -> Result<Outcome> {
        let p = &cx.params;
        let mut rng = Rng::from_entropy();
        let state_bytes = STATE_SLOTS * SLOT_BYTES;
        let m = match workload {
            Workload::W1 | Workload::W3 => {
                let dir = cx.tempdir()?;
                let (mut sync, mut state) = create_state(dir.path(), state_bytes)?;
                let n = if workload == Workload::W3 { 1000 } else { 1 };
                let io = DiskWrites::start()?;
                let mut m = measure(p, || commit_slots(&mut sync, &mut state, &mut rng, n))?;
                m.notes = if n == 1 {
                    WRITE.to_owned()
                } else {
                    format!("1,000 slots changed in the writer's copy, then one write; {WRITE}")
                };
                drop(sync);
                let payload = m.calls.unwrap_or(0) * (n * SLOT_BYTES) as u64;
                io.finish(payload, &mut m)?;
                m.notes
                    .push_str("; disk writes: the writes, then dropping the synchronizer");
                m
            }
            Workload::W2 => {
                return Ok(na(
                    "no durable commit: each write msyncs the data file, but the version switch in the state file is never synced",
                ));
            }
            Workload::W2x8 => {
                return Ok(na("one writer at a time, and no durable commit (see w2)"));
            }
            Workload::W4 => {
                let dir = cx.tempdir()?;
                drop(create_state(dir.path(), state_bytes)?);
                let mut reader = open(dir.path());
                let mut torn = 0_u64;
                let mut m = measure(p, || {
                    torn += u64::from(!read_slot(&mut reader, &mut rng)?);
                    Ok(())
                })?;
                m.torn = Some(torn);
                m.notes = format!(
                    "Synchronizer::read (check_bytes=false, as in its reader example): wait-free, zero-copy; {CHECKED}"
                );
                m
            }
            Workload::W5 => {
                let dir = cx.tempdir()?;
                drop(create_state(dir.path(), state_bytes)?);
                let mut m = w5_parent(cx, self.name(), dir.path())?;
                m.notes = format!(
                    "writer process: one slot changed per write of the whole state (grace 1 s: a writer that finds a reader still on the copy it wants to reuse sleeps 1 s); reader process: a read per slot; {CHECKED}; {COMMITS_TIMED}; {CLOCK_IN_RATE}"
                );
                m
            }
            Workload::Notify => {
                let dir = cx.tempdir()?;
                let (mut sync, mut state) = create_state(dir.path(), state_bytes)?;
                let mut m = notify_parent(cx, self.name(), dir.path(), |_, t0| {
                    state.bytes[..SLOT_BYTES].copy_from_slice(&Slot::fill(t0).to_bytes());
                    sync.write(&state, GRACE)?;
                    Ok(())
                })?;
                m.notes = String::from(
                    "no notification: the waiter process polls read() every 1 ms; t0 taken before the write of the whole 1 MiB state",
                );
                m
            }
            Workload::W6 => {
                return Ok(na(
                    "each write replaces the whole entity: appending n records would copy O(n²) bytes; no growing file",
                ));
            }
            Workload::Grow => {
                return Ok(na(
                    "no growing mapping: each write sizes its data file to the entity",
                ));
            }
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
        let mut sync = open(&args.dir);
        match (args.workload, args.role.as_str()) {
            (Workload::W5 | Workload::Reopen, "writer") => {
                let mut state = read_copy(&mut sync)?;
                if args.workload == Workload::W5 {
                    timed_commit_loop(parent, Pace::FlatOut, || {
                        commit_slots(&mut sync, &mut state, &mut rng, 1).map(|()| true)
                    })
                } else {
                    crate::child::write_until_killed(parent, || {
                        commit_slots(&mut sync, &mut state, &mut rng, 1)
                    })
                }
            }
            (Workload::W5, "reader") => timed_loop(parent, || read_slot(&mut sync, &mut rng)),
            (Workload::Notify, "waiter") => {
                let mut reader = open(&args.dir);
                let next = poller(move || read_value0(&mut reader))?;
                notify_waiter(parent, args.arg, next)
            }
            _ => Err(format!(
                "mmap-sync: no child {} for {}",
                args.role,
                args.workload.name()
            )
            .into()),
        }
    }
}
