//! A read through a closure: one commit's bytes lent to `f`, with no
//! buffer of the caller's and no allocation.

use super::Reader;
use crate::error::Result;

impl Reader {
    /// Runs `f` over `len` bytes at `offset` of one committed state, and
    /// returns that state's sequence number with what `f` returned: a read
    /// with no buffer of the caller's and no allocation (the bytes are
    /// copied into a buffer each thread keeps and reuses).
    ///
    /// Not a view into the live image itself: another process changes
    /// those bytes while they are read, and a `&[u8]` over memory that
    /// changes under it is undefined behaviour in Rust (a data race that no
    /// retry makes sound; [`docs::soundness`](crate::docs::soundness)). The
    /// one copy is a memcpy of `len` bytes, validated by the sequence lock
    /// as every read is.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("state");
    /// use mapstate::{Reader, Writer};
    /// let mut w = Writer::options().create(true).len(4096).open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"key=value")?;
    /// t.commit()?;
    /// let r = Reader::open(&path)?;
    /// let (seq, eq) = r.read_with(0, 9, |b| b.iter().position(|&c| c == b'='))?;
    /// assert_eq!((seq, eq), (1, Some(3)));
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn read_with<R>(
        &self,
        offset: u64,
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<(u64, R)> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // A reentrant call (a read inside `f`) gets a buffer of its own.
        let mut own = Vec::new();
        BUF.with(|cell| {
            let mut held = cell.try_borrow_mut();
            let buf = match &mut held {
                Ok(b) => &mut **b,
                Err(_) => &mut own,
            };
            buf.resize(len, 0);
            let r = self.read_at(offset, buf).map(|seq| (seq, f(buf)));
            if buf.capacity() > 1 << 20 {
                // One large read does not pin its memory to the thread.
                *buf = Vec::new();
            }
            r
        })
    }
}
