//! The state the workload builds, as a pure function of the counter, and
//! the check that a recovered state is exactly one committed state.
//!
//! The design follows `mapstate torture` (crates/mapstate-cli/src/torture.rs):
//! page 0 holds the counter `c` of the last committed transaction at offset
//! 0, and again across the page 0/1 boundary at offset 4092; every other
//! page `p >= 2` starts with the counter of the last transaction that wrote
//! it and its own page number, and is filled with a byte derived from both.
//! Transaction `c` first sets the state's length to [`len_pages`]`(c)` pages
//! (the state grows while the workload runs; with `shrink` it also shrinks
//! back now and then), then writes the pages of [`plan`]`(c)`.
//!
//! Because everything is a pure function of `c`, the checker recomputes the
//! exact state after commit `c` (which commit last wrote each page, or that
//! the page must read as zeros) and compares it byte for byte: a torn
//! commit, a page from a lost commit, a stale page that reappears and a
//! wrong length are all caught, with a message that says which.

/// Bytes per page (mapstate's page size).
pub(crate) const PAGE: u64 = 4096;
/// Pages of a new state (4 MiB).
pub(crate) const INITIAL_PAGES: u64 = 1024;
/// The largest the state may grow to (16 MiB).
pub(crate) const MAX_SIZE: u64 = 4096 * PAGE;

/// The length of the state after transaction `c`, in pages.
///
/// Without `shrink`: grows by one page every 16 commits from 4 MiB up to
/// 8 MiB (reached at commit 16 384). With `shrink`: a saw tooth that grows by
/// one page every 4 commits from 4 MiB to 4 MiB + 63 pages and then drops
/// back to 4 MiB (every 256 commits), which exercises truncation followed by
/// regrowth.
pub(crate) fn len_pages(c: u64, shrink: bool) -> u64 {
    if shrink {
        INITIAL_PAGES + (c / 4) % 64
    } else {
        INITIAL_PAGES + (c / 16).min(INITIAL_PAGES)
    }
}

/// A small, fast, deterministic generator (xorshift64*), as in `torture`.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How transaction `c` changes the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only the counter.
    Tiny,
    /// 1 to 8 random pages, with `write_at`.
    Multi,
    /// 16 to 128 contiguous pages (64 to 512 KiB), with `write_at`.
    Large,
    /// 1 to 4 random pages, with plain stores into `as_mut_slice`.
    Free,
}

/// The kind of transaction `c` and the data pages (all `>= 2` and below
/// [`len_pages`]`(c)`) it writes: 30 % tiny, 45 % multi-page, 5 % large,
/// 20 % free stores; about 25 KiB of log per commit on average, so that
/// the guest (software emulation) commits often between two power cuts.
pub(crate) fn plan(c: u64, shrink: bool) -> (Kind, Vec<u64>) {
    let pages = len_pages(c, shrink);
    let mut r = Rng::new(c);
    match r.below(20) {
        0..=5 => (Kind::Tiny, vec![]),
        6..=14 => (
            Kind::Multi,
            (0..=r.below(8)).map(|_| 2 + r.below(pages - 2)).collect(),
        ),
        15 => {
            let n = 16 + r.below(113);
            let start = 2 + r.below(pages - 2 - n);
            (Kind::Large, (start..start + n).collect())
        }
        _ => (
            Kind::Free,
            (0..=r.below(4)).map(|_| 2 + r.below(pages - 2)).collect(),
        ),
    }
}

/// The fill byte of page `page` as written by transaction `c`.
pub(crate) fn fill(c: u64, page: u64) -> u8 {
    (c.wrapping_mul(31).wrapping_add(page.wrapping_mul(7)) % 251) as u8
}

/// The bytes of page `page` as written by transaction `c`.
pub(crate) fn page_bytes(c: u64, page: u64) -> Vec<u8> {
    let mut p = vec![fill(c, page); PAGE as usize];
    p[..8].copy_from_slice(&c.to_le_bytes());
    p[8..16].copy_from_slice(&page.to_le_bytes());
    p
}

/// For the state after transaction `c`: for each page below
/// [`len_pages`]`(c)`, the transaction whose bytes it must hold, or 0 if it
/// must read as zeros (never written, or past the end of the state at some
/// commit since its last write). Walks back from `c` and stops as soon as
/// every page is known, so it costs a few thousand plans, not `c`.
pub(crate) fn last_writers(c: u64, shrink: bool) -> Vec<u64> {
    let n = len_pages(c, shrink);
    let mut w: Vec<Option<u64>> = vec![None; n as usize];
    // Pages 0 and 1 are the counter's; they are checked separately.
    w[0] = Some(0);
    w[1] = Some(0);
    let mut left = n.saturating_sub(2);
    // Lowest length seen so far walking back: pages at or past it were cut
    // off (or not yet there) at a later-visited commit, hence resolved.
    let mut low = n;
    let mut m = c;
    while m > 0 && left > 0 {
        for p in plan(m, shrink).1 {
            // A page at or past `low` was cut off by a later commit (or is
            // past the end at `c`): what m wrote there is gone.
            if p >= low {
                continue;
            }
            let slot = &mut w[p as usize];
            if slot.is_none() {
                *slot = Some(m);
                left -= 1;
            }
        }
        // The state after commit m was len_pages(m) long: a page at or past
        // that end reads as zeros after m unless a later commit wrote it.
        let len_m = len_pages(m, shrink);
        if len_m < low {
            for p in len_m..low {
                let slot = &mut w[p as usize];
                if slot.is_none() {
                    *slot = Some(0);
                    left -= 1;
                }
            }
            low = len_m;
        }
        m -= 1;
    }
    w.into_iter().map(|x| x.unwrap_or(0)).collect()
}

fn word(s: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks that `s` (a whole snapshot) is exactly the state after one
/// transaction; returns its counter, or what is wrong.
pub(crate) fn check(s: &[u8], shrink: bool) -> Result<u64, String> {
    let p2 = 2 * PAGE as usize;
    if s.len() < p2 {
        return Err(format!(
            "the state is {} bytes long, shorter than two pages",
            s.len()
        ));
    }
    let c = word(s, 0);
    let across = word(s, 4092);
    if across != c {
        return Err(format!(
            "torn counter: {c} at offset 0 but {across} across the page boundary at 4092"
        ));
    }
    let want_len = len_pages(c, shrink) * PAGE;
    if s.len() as u64 != want_len {
        return Err(format!(
            "commit {c}: the state is {} bytes long, but commit {c} made it {want_len}",
            s.len()
        ));
    }
    if let Some(i) = s[8..4092].iter().position(|&b| b != 0) {
        return Err(format!("page 0 holds a stray byte at offset {}", 8 + i));
    }
    if let Some(i) = s[4100..p2].iter().position(|&b| b != 0) {
        return Err(format!("page 1 holds a stray byte at offset {}", 4100 + i));
    }
    let writers = last_writers(c, shrink);
    for (page, &e) in writers.iter().enumerate().skip(2) {
        let at = page * PAGE as usize;
        let p = &s[at..at + PAGE as usize];
        if page_is(p, e, page as u64) {
            continue;
        }
        return Err(describe(c, page as u64, p, e));
    }
    Ok(c)
}

/// Whether page `page` holds exactly what transaction `e` wrote (zeros if `e == 0`).
fn page_is(p: &[u8], e: u64, page: u64) -> bool {
    if e == 0 {
        return p.iter().all(|&b| b == 0);
    }
    let f = fill(e, page);
    word(p, 0) == e && word(p, 8) == page && p[16..].iter().all(|&b| b == f)
}

/// Says how page `page` (which should hold transaction `e`'s bytes) differs.
fn describe(c: u64, page: u64, p: &[u8], e: u64) -> String {
    let pc = word(p, 0);
    let want = if e == 0 {
        "zeros".to_string()
    } else {
        format!("the bytes of commit {e}")
    };
    if p.iter().all(|&b| b == 0) {
        return format!(
            "counter {c}: page {page} reads as zeros but must hold {want} (a lost or partly applied commit)"
        );
    }
    if !page_is(p, pc, page) {
        return format!(
            "counter {c}: page {page} is torn inside (starts with commit {pc}); it must hold {want}"
        );
    }
    if pc > c {
        return format!(
            "counter {c}: page {page} holds commit {pc}, newer than the counter (a partly applied commit); it must hold {want}"
        );
    }
    if e == 0 {
        return format!(
            "counter {c}: page {page} holds stale bytes of commit {pc}, but the page was cut off by a shrink since and must read as zeros"
        );
    }
    format!(
        "counter {c}: page {page} holds commit {pc}, but commit {e} wrote it last (a commit lost or partly applied)"
    )
}

/// The append workload (`--append`): a state of [`INITIAL_PAGES`] zero
/// pages to which every transaction appends [`append::APPEND_PAGES`] pages, each
/// [`page_bytes`] of the transaction and the page (so the last page starts
/// with the counter). Every [`append::APPEND_CYCLE`] transactions the state is cut
/// back to [`INITIAL_PAGES`] first (one commit: the cut and the append), so
/// that it stays below [`MAX_SIZE`]. Checkpoints then hold only pages past
/// the durable image's end (no journal), except after a cut back, whose
/// pages lie inside the image the last checkpoint wrote (journalled).
pub(crate) mod append {
    use super::{INITIAL_PAGES, MAX_SIZE, PAGE, describe, page_is, word};

    /// Pages appended per transaction.
    pub(crate) const APPEND_PAGES: u64 = 2;
    /// Transactions between two cuts back to [`INITIAL_PAGES`].
    pub(crate) const APPEND_CYCLE: u64 = (MAX_SIZE / PAGE - INITIAL_PAGES) / APPEND_PAGES;

    /// The length of the state after transaction `c`, in pages.
    pub(crate) fn len_pages(c: u64) -> u64 {
        if c == 0 {
            return INITIAL_PAGES;
        }
        INITIAL_PAGES + APPEND_PAGES * ((c - 1) % APPEND_CYCLE + 1)
    }

    /// Whether transaction `c` first cuts the state back.
    pub(crate) fn cuts_back(c: u64) -> bool {
        c > 1 && (c - 1) % APPEND_CYCLE == 0
    }

    /// The counter of the state `s`: the first word of its last page (0
    /// for the initial zero pages).
    pub(crate) fn counter(s: &[u8]) -> u64 {
        if s.len() as u64 <= INITIAL_PAGES * PAGE {
            return 0;
        }
        word(s, s.len() - PAGE as usize)
    }

    /// Checks that `s` is exactly the state after one transaction; returns
    /// its counter, or what is wrong.
    pub(crate) fn check(s: &[u8]) -> Result<u64, String> {
        if s.len() as u64 % PAGE != 0 || (s.len() as u64) < INITIAL_PAGES * PAGE {
            return Err(format!("the state is {} bytes long", s.len()));
        }
        let c = counter(s);
        let want_len = len_pages(c) * PAGE;
        if s.len() as u64 != want_len {
            return Err(format!(
                "commit {c}: the state is {} bytes long, but commit {c} made it {want_len}",
                s.len()
            ));
        }
        if let Some(i) = s[..(INITIAL_PAGES * PAGE) as usize]
            .iter()
            .position(|&b| b != 0)
        {
            return Err(format!("the initial pages hold a stray byte at offset {i}"));
        }
        // The transaction that appended each page since the last cut back.
        let first = c - (c - 1) % APPEND_CYCLE;
        for page in INITIAL_PAGES..len_pages(c) {
            let e = first + (page - INITIAL_PAGES) / APPEND_PAGES;
            let at = (page * PAGE) as usize;
            let p = &s[at..at + PAGE as usize];
            if !page_is(p, e, page) {
                return Err(describe(c, page, p, e));
            }
        }
        Ok(c)
    }

    /// The exact state after transaction `c` (for the tests).
    #[cfg(test)]
    pub(crate) fn build(c: u64) -> Vec<u8> {
        let mut s = vec![0u8; (len_pages(c) * PAGE) as usize];
        if c > 0 {
            let first = c - (c - 1) % APPEND_CYCLE;
            for page in INITIAL_PAGES..len_pages(c) {
                let e = first + (page - INITIAL_PAGES) / APPEND_PAGES;
                let at = (page * PAGE) as usize;
                s[at..at + PAGE as usize].copy_from_slice(&super::page_bytes(e, page));
            }
        }
        s
    }
}

/// Builds the exact state after transaction `c` by replaying the model
/// (for the tests).
#[cfg(test)]
pub(crate) fn build(c: u64, shrink: bool) -> Vec<u8> {
    let mut s = vec![0u8; (len_pages(0, shrink) * PAGE) as usize];
    for m in 1..=c {
        let n = (len_pages(m, shrink) * PAGE) as usize;
        if n < s.len() {
            s.truncate(n);
        }
        s.resize(n, 0);
        s[..8].copy_from_slice(&m.to_le_bytes());
        s[4092..4100].copy_from_slice(&m.to_le_bytes());
        for p in plan(m, shrink).1 {
            let at = (p * PAGE) as usize;
            s[at..at + PAGE as usize].copy_from_slice(&page_bytes(m, p));
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::many_single_char_names)]
mod tests {
    use super::*;

    #[test]
    fn the_append_model_accepts_its_states_and_rejects_torn_ones() {
        use super::append::{APPEND_CYCLE, build, check};
        for c in [0, 1, 2, 3, APPEND_CYCLE, APPEND_CYCLE + 1, APPEND_CYCLE + 2] {
            assert_eq!(check(&build(c)), Ok(c), "commit {c}");
        }
        let s = build(5);
        // The last page of commit 5 lost: the length says 5, the counter 4.
        let lost = &s[..s.len() - PAGE as usize];
        assert!(check(lost).is_err());
        let mut torn = s.clone();
        let n = torn.len();
        torn[n - 100] ^= 1;
        assert!(check(&torn).unwrap_err().contains("torn"));
        let mut zeroed = build(APPEND_CYCLE + 2);
        let at = (INITIAL_PAGES * PAGE) as usize;
        zeroed[at..at + PAGE as usize].fill(0);
        assert!(check(&zeroed).unwrap_err().contains("zeros"));
        // A stale page of the previous cycle after the cut back.
        let mut stale = build(APPEND_CYCLE + 1);
        let at = (INITIAL_PAGES * PAGE) as usize;
        stale[at..at + PAGE as usize].copy_from_slice(&page_bytes(1, INITIAL_PAGES));
        assert!(check(&stale).is_err());
    }

    #[test]
    fn plans_stay_inside_the_state() {
        for shrink in [false, true] {
            for c in 1..20_000 {
                let n = len_pages(c, shrink);
                assert!(n * PAGE <= MAX_SIZE);
                for p in plan(c, shrink).1 {
                    assert!((2..n).contains(&p), "commit {c} page {p} of {n}");
                }
            }
        }
    }

    #[test]
    fn a_replayed_state_passes_and_last_writers_agree() {
        for shrink in [false, true] {
            for c in [0, 1, 7, 300, 1000] {
                let s = build(c, shrink);
                assert_eq!(check(&s, shrink), Ok(c), "c={c} shrink={shrink}");
            }
        }
    }

    #[test]
    fn torn_and_stale_states_are_detected() {
        let shrink = false;
        let c = 400;
        let s = build(c, shrink);
        assert_eq!(check(&s, shrink), Ok(c));

        // The counter's two halves disagree (a torn commit).
        let mut t = s.clone();
        t[4095] ^= 1;
        assert!(check(&t, shrink).unwrap_err().contains("torn counter"));

        // A page of the next commit applied without its counter.
        let (_, next) = plan(c + 1, shrink);
        let mut nc = c + 1;
        let mut next = next;
        while next.is_empty() {
            nc += 1;
            next = plan(nc, shrink).1;
        }
        let p = next[0];
        let mut t = s.clone();
        t[(p * PAGE) as usize..((p + 1) * PAGE) as usize].copy_from_slice(&page_bytes(nc, p));
        assert!(
            check(&t, shrink)
                .unwrap_err()
                .contains("newer than the counter")
        );

        // The last commit only partly visible: one of its pages is older.
        let mut lc = c;
        while plan(lc, shrink).1.is_empty() {
            lc -= 1;
        }
        let s2 = build(lc, shrink);
        let p = plan(lc, shrink).1[0];
        let mut t = s2.clone();
        t[(p * PAGE) as usize..((p + 1) * PAGE) as usize].fill(0);
        let e = check(&t, shrink).unwrap_err();
        assert!(
            e.contains("reads as zeros") || e.contains("wrote it last"),
            "{e}"
        );

        // A byte flipped inside a page.
        let mut t = s.clone();
        let w = last_writers(c, shrink);
        let p = (2..w.len()).find(|&p| w[p] != 0).expect("a written page");
        t[p * PAGE as usize + 100] ^= 0xff;
        assert!(check(&t, shrink).unwrap_err().contains("torn inside"));

        // A wrong length.
        let mut t = s.clone();
        t.extend_from_slice(&[0; PAGE as usize]);
        assert!(check(&t, shrink).unwrap_err().contains("bytes long"));
    }

    #[test]
    fn stale_bytes_after_shrink_and_regrowth_are_detected() {
        let shrink = true;
        let mut found = 0;
        // States after the drop to 4 MiB at commit 256, regrown since.
        for c in [270, 300, 350, 420, 500] {
            let w = last_writers(c, shrink);
            let s = build(c, shrink);
            assert_eq!(check(&s, shrink), Ok(c));
            // A page past the length at 256, not written since, but written
            // before the drop: put back what it held then (a stale page).
            for p in len_pages(256, shrink)..len_pages(c, shrink) {
                if w[p as usize] != 0 {
                    continue;
                }
                let Some(m) = (1..256).rev().find(|&m| plan(m, shrink).1.contains(&p)) else {
                    continue;
                };
                let mut t = s.clone();
                let at = (p * PAGE) as usize;
                t[at..at + PAGE as usize].copy_from_slice(&page_bytes(m, p));
                let e = check(&t, shrink).unwrap_err();
                assert!(e.contains("stale"), "{e}");
                found += 1;
            }
        }
        assert!(found > 0, "no case found");
    }
}
