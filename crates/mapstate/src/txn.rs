//! [`Txn`]: one transaction of a [`Writer`], which [`Writer::begin`]
//! starts. Explicit changes ([`Txn::write_at`], [`Txn::get_mut`]) are
//! recorded as they are made; free stores into [`Txn::as_mut_slice`] or
//! [`Txn::extend_on_write`] are found at commit. `commit` makes all of it
//! visible at once; dropping the transaction discards it. The writer keeps
//! what the open transaction changed (`Pending`), so that a `Txn` is only a
//! borrow of it.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::offset::{Offset, misaligned};
use crate::options::Durability;
use crate::store::view::push_range;
use crate::writer::{LenRule, Writer};

impl Writer {
    /// Starts a transaction. Nothing it changes is visible to anyone else
    /// until [`Txn::commit`]; dropping it discards it.
    pub fn begin(&mut self) -> Txn<'_> {
        let len = self.len();
        self.pending.reset(len);
        Txn::new(self)
    }
}

/// One transaction of a [`Writer`].
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// use mapstate::{Offset, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let mut w = Writer::options().create(true).len(4096).open(dir.path().join("s"))?;
/// let mut t = w.begin();
/// t.write_at(0, b"hello")?;                    // an explicit change
/// *t.get_mut::<u64>(Offset::new(64))? += 1;    // a typed one
/// t.as_mut_slice()[4095] = 7;                  // a free store, found at commit
/// t.commit()?;                                 // all or nothing
/// # w.remove()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Txn<'w> {
    w: &'w mut Writer,
    done: bool,
}

impl<'w> Txn<'w> {
    pub(crate) fn new(w: &'w mut Writer) -> Self {
        Self { w, done: false }
    }
}

impl Txn<'_> {
    /// The length the state will have when this transaction commits.
    #[allow(clippy::misnamed_getters)] // the transaction's length, not the committed one
    pub fn len(&self) -> u64 {
        self.w.pending.len
    }

    /// Whether that length is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                size: self.len(),
            }),
        }
    }

    /// Changes the state's length (growing reads as zeros; at most the maximum size).
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(dir.path().join("s"))?;
    /// let mut t = w.begin();
    /// t.set_len(10_000)?; // the new bytes are zeros
    /// t.write_at(9_999, b"!")?;
    /// t.commit()?;
    /// assert_eq!(w.len(), 10_000);
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        let max = self.w.max_size();
        if len > max {
            return Err(Error::InvalidSize {
                what: "length",
                size: len,
                reason: format!("larger than the maximum size of {max} bytes"),
            });
        }
        self.w.view.map_to(len, &self.w.live.path)?;
        let p = &mut self.w.pending;
        p.len_rule = LenRule::Set;
        if len < p.len {
            // Bytes past the new end must read as zeros if the state grows
            // again: in this transaction's view now, in the state at commit.
            self.w.view.bytes_mut(len, p.len - len).fill(0);
            p.zero_from = Some(p.zero_from.map_or(len, |z| z.min(len)));
        }
        p.len = len;
        Ok(())
    }

    /// Writes `data` at `offset`.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(100, b"hello")?; // recorded as it is made: no search at commit
    /// assert!(t.write_at(4094, b"abc").is_err()); // past the length: OutOfBounds
    /// t.commit()?;
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.check(offset, data.len() as u64)?;
        self.w
            .view
            .bytes_mut(offset, data.len() as u64)
            .copy_from_slice(data);
        if !data.is_empty() {
            push_range(&mut self.w.pending.ranges, offset, data.len() as u64);
        }
        Ok(())
    }

    /// Reads bytes at `offset`, including this transaction's own changes.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len() as u64)?;
        buf.copy_from_slice(self.w.view.bytes(offset, buf.len() as u64));
        Ok(())
    }

    fn typed<T: KnownLayout>(&self, at: Offset<T>) -> Result<(u64, u64)> {
        let offset = at.aligned()?;
        let size = std::mem::size_of::<T>() as u64;
        self.check(offset, size)?;
        Ok((offset, size))
    }

    /// A reference to the `T` at `at` in this transaction's view.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// use mapstate::Offset;
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(8, &7u64.to_le_bytes())?;
    /// assert_eq!(*t.get(Offset::<u64>::new(8))?, 7); // this transaction's view
    /// t.commit()?;
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn get<T: FromBytes + KnownLayout + Immutable>(&self, at: Offset<T>) -> Result<&T> {
        let (off, size) = self.typed(at)?;
        T::ref_from_bytes(self.w.view.bytes(off, size)).map_err(|_| misaligned::<T>(off))
    }

    /// A mutable reference to the `T` at `at`; the whole `T` is part of the commit.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// use mapstate::Offset;
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(&path)?;
    /// let hits = Offset::<u64>::new(0);
    /// let mut t = w.begin();
    /// *t.get_mut(hits)? += 1; // a store through a reference, found at commit
    /// t.commit()?;
    /// assert_eq!(mapstate::Reader::open(&path)?.read(hits)?, 1);
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn get_mut<T: FromBytes + IntoBytes + KnownLayout>(
        &mut self,
        at: Offset<T>,
    ) -> Result<&mut T> {
        let (off, size) = self.typed(at)?;
        push_range(&mut self.w.pending.ranges, off, size);
        T::mut_from_bytes(self.w.view.bytes_mut(off, size)).map_err(|_| misaligned::<T>(off))
    }

    /// The whole state, writable with plain stores (a C library filling a
    /// buffer, say). The commit finds the pages written (with the kernel's
    /// write tracking where it has it) and logs those that changed; that
    /// search costs time in proportion to the state's size (about 1 ms per
    /// GiB): where the stores fall in a known range, [`Txn::slice_mut`]
    /// costs in proportion to the range instead.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// let mut w = mapstate::Writer::options().create(true).len(8192).open(&path)?;
    /// let mut t = w.begin();
    /// let bytes = t.as_mut_slice();
    /// bytes[0] = 1; // plain stores anywhere in the state
    /// bytes[5000..5004].copy_from_slice(b"free");
    /// t.commit()?; // finds the two pages written and commits them together
    /// let mut b = [0u8; 4];
    /// mapstate::Reader::open(&path)?.read_at(5000, &mut b)?;
    /// assert_eq!(&b, b"free");
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let n = self.len();
        self.hand_out(0, n);
        self.w.view.bytes_mut(0, n)
    }

    /// The bytes of `range`, writable with plain stores, as
    /// [`Txn::as_mut_slice`] but only there: the commit looks for the pages
    /// written in `range` alone (page rounded), so its cost follows the
    /// range, not the state. `Error::OutOfBounds` if `range` is not inside
    /// the state's length.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("state");
    /// let mut w = mapstate::Writer::options().create(true).len(1 << 30).open(&path)?;
    /// let mut t = w.begin();
    /// let page = t.slice_mut(512 << 20..(512 << 20) + 4096)?;
    /// page[..5].copy_from_slice(b"hello"); // any stores, a C routine's say
    /// t.commit()?; // looks at one page, not at 1 GiB
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn slice_mut(&mut self, range: std::ops::Range<u64>) -> Result<&mut [u8]> {
        let len = range.end.saturating_sub(range.start);
        self.check(range.start, len)?;
        self.hand_out(range.start, len);
        Ok(self.w.view.bytes_mut(range.start, len))
    }

    /// Extend-on-write: the whole address range up to the maximum size,
    /// writable with plain stores. Bytes past the state's length read as
    /// zeros; a load or store past the mapped part grows the view (and the
    /// live image) in chunks at stable addresses, from a SIGSEGV handler,
    /// with no call by the program. At commit the state's length becomes the
    /// end of the last page written (page granularity: the length is then a
    /// multiple of 4096, or the maximum size), unless the transaction calls
    /// [`Txn::set_len`], whose length is kept.
    ///
    /// If growth fails (the live image's filesystem is full, a memory limit)
    /// the stores land in scratch pages and the commit fails with
    /// [`Error::NoSpace`] (or another growth error), discarding the
    /// transaction; nothing committed before is affected. A store in the
    /// guard just past the maximum size (up to 1 MiB) fails the commit with
    /// [`Error::PastMaximum`]; further out it is an ordinary segfault.
    pub fn extend_on_write(&mut self) -> &mut [u8] {
        self.extend_from(0)
    }

    /// [`Txn::extend_on_write`] from `offset` on: the bytes
    /// `offset..max_size` (index 0 of the slice is byte `offset` of the
    /// state). The commit looks for the pages written from `offset` alone
    /// (page rounded), so an append that starts here at the state's end
    /// costs what the record costs, not what the state costs.
    /// `Error::OutOfBounds` if `offset` is past the maximum size.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("state");
    /// let mut w = mapstate::Writer::options().create(true).len(0).open(&path)?;
    /// for record in [b"first record", b"and another!"] {
    ///     let mut t = w.begin();
    ///     let end = t.len();
    ///     t.extend_on_write_from(end)?[..record.len()].copy_from_slice(record);
    ///     t.commit()?; // the length is now the end of the last page written
    /// }
    /// assert_eq!(w.len(), 8192);
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn extend_on_write_from(&mut self, offset: u64) -> Result<&mut [u8]> {
        let max = self.w.max_size();
        if offset > max {
            return Err(Error::OutOfBounds {
                offset,
                len: 0,
                size: max,
            });
        }
        Ok(self.extend_from(offset))
    }

    /// Extend-on-write from `offset` (at most the maximum size).
    fn extend_from(&mut self, offset: u64) -> &mut [u8] {
        let max = self.w.max_size();
        self.hand_out(offset, max - offset);
        let p = &mut self.w.pending;
        if p.len_rule != LenRule::Set {
            p.len_rule = LenRule::FollowsStores;
        }
        self.w.view.bytes_mut(offset, max - offset)
    }

    /// Marks `off..off + len` of the view handed out for free stores
    /// (which the commit then looks for there).
    fn hand_out(&mut self, off: u64, len: u64) {
        let path = self.w.live.path.clone();
        self.w.view.track_free_stores(&path);
        push_range(&mut self.w.pending.free, off, len);
    }

    /// The whole state as this transaction sees it.
    pub fn as_slice(&self) -> &[u8] {
        self.w.view.bytes(0, self.len())
    }

    /// Makes every change of this transaction visible at once, with the
    /// writer's durability. Returns the commit's sequence number (the
    /// previous one if the transaction changed nothing).
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"a")?;
    /// assert_eq!(t.commit()?, 1);
    /// assert_eq!(w.begin().commit()?, 1); // an empty transaction: the previous number
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn commit(self) -> Result<u64> {
        let d = self.w.durability();
        self.commit_with(d)
    }

    /// As [`Txn::commit`] with another durability for this commit.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// use mapstate::Durability;
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(&path)?; // PageCache
    /// let mut t = w.begin();
    /// t.write_at(0, b"order")?;
    /// t.commit_with(Durability::Sync)?; // this one is on disk when it returns
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn commit_with(mut self, durability: Durability) -> Result<u64> {
        self.done = true;
        let r = self.w.commit_pending(durability);
        if r.is_err() {
            self.w.abort_pending();
        }
        r
    }

    /// Discards every change of this transaction.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(dir.path().join("s"))?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"never seen")?;
    /// t.abort(); // as if it never happened (dropping `t` does the same)
    /// assert_eq!(w.seq(), 0);
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn abort(mut self) {
        self.done = true;
        self.w.abort_pending();
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.w.abort_pending();
        }
    }
}
