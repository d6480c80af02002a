//! The 64-byte slot that every workload writes and reads.
//!
//! A slot is seven payload words and an eighth word that hashes them, so a
//! reader that sees half of one write and half of another (a torn read)
//! notices it: torn reads are counted, never silently averaged in. The first
//! payload word is the slot's value (a seed, or a timestamp for `notify`); the
//! other six are derived from it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes in a slot.
pub(crate) const SLOT_BYTES: usize = 64;
/// Words in a slot: seven payload words and the hash.
pub(crate) const SLOT_WORDS: usize = 8;
/// Slots in the state of workloads w1 to w5 and notify: 16,384 × 64 B = 1 MiB.
pub(crate) const STATE_SLOTS: usize = 16_384;

/// One slot: `[value, six derived words, hash of the first seven]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot(pub(crate) [u64; SLOT_WORDS]);

impl Slot {
    /// The slot whose value is `value`, with its derived words and hash.
    pub(crate) fn fill(value: u64) -> Self {
        let mut words = [0_u64; SLOT_WORDS];
        words[0] = value;
        let mut state = value;
        for word in &mut words[1..SLOT_WORDS - 1] {
            *word = splitmix64(&mut state);
        }
        words[SLOT_WORDS - 1] = hash(&words[..SLOT_WORDS - 1]);
        Self(words)
    }

    /// The value the slot was filled with.
    pub(crate) fn value(&self) -> u64 {
        self.0[0]
    }

    /// Whether the hash matches the payload: `false` means a torn slot.
    pub(crate) fn check(&self) -> bool {
        hash(&self.0[..SLOT_WORDS - 1]) == self.0[SLOT_WORDS - 1]
    }

    /// The slot as 64 little-endian bytes.
    pub(crate) fn to_bytes(self) -> [u8; SLOT_BYTES] {
        let mut out = [0_u8; SLOT_BYTES];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// The slot in the first 64 bytes of `bytes`, or `None` if it is shorter.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..SLOT_BYTES)?;
        let mut words = [0_u64; SLOT_WORDS];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut le = [0_u8; 8];
            le.copy_from_slice(chunk);
            *word = u64::from_le_bytes(le);
        }
        Some(Self(words))
    }

    /// Whether `bytes` starts with a whole, untorn slot.
    pub(crate) fn check_bytes(bytes: &[u8]) -> bool {
        Self::from_bytes(bytes).is_some_and(|s| s.check())
    }

    /// Reads the slot from eight shared words with relaxed loads: another
    /// process may be storing into them, and nothing orders the two.
    pub(crate) fn load(words: &[AtomicU64]) -> Self {
        let mut out = [0_u64; SLOT_WORDS];
        for (o, w) in out.iter_mut().zip(words) {
            *o = w.load(Ordering::Relaxed);
        }
        Self(out)
    }

    /// Stores the slot into eight shared words with relaxed stores (plain
    /// `mov`s on x86-64): the unsynchronised store of a plain mapping.
    pub(crate) fn store(self, words: &[AtomicU64]) {
        for (w, v) in words.iter().zip(self.0) {
            w.store(v, Ordering::Relaxed);
        }
    }
}

/// Writes `slots` slots filled with their own index into `out`, starting at
/// slot number `first`: the initial content of every state.
pub(crate) fn fill_slots(out: &mut [u8], first: u64) {
    for (i, chunk) in out.chunks_exact_mut(SLOT_BYTES).enumerate() {
        chunk.copy_from_slice(&Slot::fill(first + i as u64).to_bytes());
    }
}

/// One step of `SplitMix64` (Steele, Lea and Flood): a fast, well-mixed
/// sequence from any starting state.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit hash of the payload words, sensitive to each word and its place.
fn hash(words: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3_u64;
    for &w in words {
        h = (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}

/// A small, fast pseudo-random generator (`SplitMix64`) for slot numbers and
/// values; every thread and process owns its own.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from the clock and the process id.
    pub(crate) fn from_entropy() -> Self {
        let nanos = crate::harness::monotonic_ns();
        Self(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The next pseudo-random word.
    pub(crate) fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// A pseudo-random number in `0..n` (Lemire's multiply-shift).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_slots_check() {
        for v in [0, 1, 42, u64::MAX] {
            let s = Slot::fill(v);
            assert!(s.check());
            assert_eq!(s.value(), v);
            let round = Slot::from_bytes(&s.to_bytes()).unwrap();
            assert_eq!(round, s);
            assert!(Slot::check_bytes(&s.to_bytes()));
        }
    }

    #[test]
    fn a_torn_slot_is_detected() {
        // Every way of taking the first k words of one write and the rest
        // of another must fail the check.
        let (a, b) = (Slot::fill(7), Slot::fill(8));
        for k in 1..SLOT_WORDS {
            let mut torn = a;
            torn.0[k..].copy_from_slice(&b.0[k..]);
            assert!(!torn.check(), "torn at word {k} passed");
        }
        // So must a single flipped bit anywhere.
        let mut bytes = a.to_bytes();
        for i in 0..SLOT_BYTES * 8 {
            bytes[i / 8] ^= 1 << (i % 8);
            assert!(!Slot::check_bytes(&bytes), "bit {i} flip passed");
            bytes[i / 8] ^= 1 << (i % 8);
        }
        assert!(!Slot::check_bytes(&bytes[..SLOT_BYTES - 1]));
    }

    #[test]
    fn shared_words_round_trip() {
        let words: Vec<AtomicU64> = (0..SLOT_WORDS).map(|_| AtomicU64::new(0)).collect();
        assert!(!Slot::load(&words).check());
        Slot::fill(99).store(&words);
        assert_eq!(Slot::load(&words), Slot::fill(99));
    }

    #[test]
    fn rng_below_stays_in_range() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let x = rng.below(10);
            seen[x] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
