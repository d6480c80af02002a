//! [`Offset<T>`]: a typed position in a mapped file, which stays valid when the
//! mapping grows, moves or is mapped by another process at another address.

use std::fmt;
use std::marker::PhantomData;

use zerocopy::little_endian::U64;

use crate::error::{Error, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A byte offset into a mapped file that names a `T` (a relative pointer).
///
/// Pointers into a mapping are only valid in one process and only until the
/// mapping moves; an `Offset<T>` is valid in every process and across growth,
/// and it may itself be stored in the file (it is 8 little-endian bytes).
/// Dereferencing goes through [`crate::Mapping::read`] and friends, which
/// check bounds and alignment.
///
/// ```
/// use mapstate::Offset;
/// let head: Offset<u64> = Offset::new(64);
/// assert_eq!(head.index(2).get(), 64 + 2 * 8);
/// assert_eq!(head.cast::<u32>().get(), 64);
/// ```
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(transparent)]
pub struct Offset<T> {
    off: U64,
    _type: PhantomData<fn() -> T>,
}

impl<T> Offset<T> {
    /// The offset `off` bytes from the start of the file.
    pub const fn new(off: u64) -> Self {
        Self {
            off: U64::new(off),
            _type: PhantomData,
        }
    }

    /// The byte offset.
    pub const fn get(self) -> u64 {
        self.off.get()
    }

    /// The byte offset, if it is aligned for `T`; else `Error::Misaligned`.
    pub(crate) fn aligned(self) -> Result<u64> {
        let offset = self.get();
        if offset % std::mem::align_of::<T>() as u64 != 0 {
            return Err(misaligned::<T>(offset));
        }
        Ok(offset)
    }

    /// The offset of element `i` of an array of `T` starting here
    /// (saturating at `u64::MAX`, which every bounds check rejects).
    #[must_use]
    pub fn index(self, i: u64) -> Self {
        let size = std::mem::size_of::<T>() as u64;
        Self::new(self.get().saturating_add(i.saturating_mul(size)))
    }

    /// The offset `bytes` further on, naming a `U` (for a field or the next record).
    #[must_use]
    pub fn byte_add<U>(self, bytes: u64) -> Offset<U> {
        Offset::new(self.get().saturating_add(bytes))
    }

    /// The same offset, naming a `U`.
    #[must_use]
    pub const fn cast<U>(self) -> Offset<U> {
        Offset::new(self.off.get())
    }
}

// Manual impls: derives would demand `T: Clone` etc., but an offset is just a number.
impl<T> Clone for Offset<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Offset<T> {}
impl<T> PartialEq for Offset<T> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}
impl<T> Eq for Offset<T> {}
impl<T> fmt::Debug for Offset<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Offset<{}>({})", std::any::type_name::<T>(), self.get())
    }
}

/// `Error::Misaligned` for a `T` at `offset`.
pub(crate) fn misaligned<T>(offset: u64) -> Error {
    Error::Misaligned {
        offset,
        align: std::mem::align_of::<T>(),
        type_name: std::any::type_name::<T>(),
    }
}
