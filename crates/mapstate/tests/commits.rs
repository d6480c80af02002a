//! Copying a state commit by commit (the core of replication):
//! `Reader::commits_since` on the original, `Writer::apply` on the copy,
//! and a fresh copy (`Reader::backup`, `WriterOptions::restore`) when the
//! log no longer holds what the copy needs. After every round the copy is
//! byte-identical to the original, at the same sequence number, through
//! growth, shrinks (one grown back in the same transaction), free stores,
//! extend-on-write and checkpoints.
#![allow(clippy::many_single_char_names)]

mod common;

use mapstate::{CommitsSince, Error, Reader, Writer, WriterOptions};

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One random transaction of one of several kinds.
fn random_commit(w: &mut Writer, rng: &mut Rng) {
    let len = w.len();
    let max = w.max_size();
    let mut t = w.begin();
    match rng.below(6) {
        0 => {
            // Small explicit writes.
            for _ in 0..=rng.below(8) {
                let n = 1 + rng.below(100);
                let off = rng.below(len.saturating_sub(n));
                if off + n <= len {
                    t.write_at(off, &vec![rng.next() as u8; n as usize])
                        .unwrap();
                }
            }
        }
        1 => {
            // Growth, with a write in the new part.
            let new = (len + 1 + rng.below(20_000)).min(max);
            t.set_len(new).unwrap();
            t.write_at(new - 1, &[0xEE]).unwrap();
        }
        2 => {
            // A shrink, sometimes grown back in the same transaction.
            let new = len / 2 + rng.below(len / 2 + 1);
            t.set_len(new).unwrap();
            if rng.below(2) == 0 {
                t.set_len(len).unwrap();
            }
        }
        3 => {
            // Free stores in a range handed out.
            if len >= 4096 {
                let at = rng.below(len - 4096);
                let s = t.slice_mut(at..at + 4096).unwrap();
                for _ in 0..4 {
                    let i = rng.below(4096) as usize;
                    s[i] = s[i].wrapping_add(1);
                }
            }
        }
        4 => {
            // An append past the end (extend-on-write).
            let end = t.len();
            if end + 100 < max {
                t.extend_on_write_from(end).unwrap()[..100].fill(rng.next() as u8);
            }
        }
        _ => {
            // A large write.
            let n = (64 << 10).min(len);
            let off = rng.below(len - n + 1);
            t.write_at(off, &vec![rng.next() as u8; n as usize])
                .unwrap();
        }
    }
    t.commit().unwrap();
}

/// Brings the copy at `copy` up to the original that `r` reads: the
/// commits since its own last one, or a fresh copy if they are gone.
/// Returns whether a fresh copy was needed.
fn sync(
    r: &Reader,
    copy: &mut Option<Writer>,
    copy_path: &std::path::Path,
    o: &WriterOptions,
) -> bool {
    let at = copy.as_ref().map_or(0, Writer::seq);
    match r.commits_since(at).unwrap() {
        CommitsSince::Commits(cs) => {
            let w = copy
                .as_mut()
                .expect("a copy exists once a commit was applied");
            for c in &cs {
                assert_eq!(w.apply(c).unwrap(), c.seq);
            }
            false
        }
        CommitsSince::Gone { .. } => {
            drop(copy.take());
            let backup = copy_path.with_extension("backup");
            let _ = std::fs::remove_file(&backup);
            r.backup(&backup).unwrap();
            *copy = Some(o.clone().create(false).restore(&backup, copy_path).unwrap());
            true
        }
    }
}

#[test]
fn a_copy_kept_by_commits_since_and_apply_stays_identical() {
    let (d, p, o) = common::small_state();
    let copy_path = d.path().join("copy");
    let mut w = o.clone().max_size(4 << 20).open(&p).unwrap();
    let r = o.reader().open(&p).unwrap();
    let mut copy = None;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut fresh, mut applied) = (0, 0);
    for round in 0..300 {
        for _ in 0..rng.below(5) {
            random_commit(&mut w, &mut rng);
        }
        if round % 37 == 0 {
            w.checkpoint().unwrap(); // the log restarts
        }
        let before = copy.as_ref().map_or(0, Writer::seq);
        if sync(&r, &mut copy, &copy_path, &o) {
            fresh += 1;
        } else {
            applied += w.seq() - before;
        }
        let c = copy.as_ref().unwrap();
        assert_eq!(c.seq(), w.seq(), "round {round}");
        let mine = Reader::options()
            .live_dir(d.path().join("live"))
            .open(&copy_path)
            .unwrap()
            .snapshot()
            .unwrap();
        assert_eq!(
            mine,
            r.snapshot().unwrap(),
            "round {round}: the copy differs"
        );
    }
    assert!(
        applied > 200 && fresh > 3,
        "{applied} commits applied, {fresh} fresh copies"
    );
}

#[test]
fn a_commit_out_of_order_is_refused_and_changes_nothing() {
    let (d, p, o) = common::small_state();
    let mut w = o.open(&p).unwrap();
    let r = o.reader().open(&p).unwrap();
    let copy_path = d.path().join("copy");
    r.backup(&copy_path).unwrap();
    for i in 0..3u8 {
        let mut t = w.begin();
        t.write_at(u64::from(i), &[i + 1]).unwrap();
        t.commit().unwrap();
    }
    let CommitsSince::Commits(cs) = r.commits_since(0).unwrap() else {
        panic!("the log holds them")
    };
    let mut copy = o.clone().create(false).open(&copy_path).unwrap();
    let e = copy.apply(&cs[1]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::OutOfOrder {
                last: 0,
                got: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(copy.seq(), 0);
    copy.apply(&cs[0]).unwrap();
    assert!(
        matches!(copy.apply(&cs[0]), Err(Error::OutOfOrder { .. })),
        "applied twice"
    );
    copy.apply(&cs[1]).unwrap();
    copy.apply(&cs[2]).unwrap();
    assert_eq!(copy.seq(), 3);
}
