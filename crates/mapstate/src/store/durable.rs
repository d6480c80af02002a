//! The durable image (the file the user names): a header page with two
//! checksummed header slots, then the state's bytes as of the last
//! checkpoint. Only checkpoints change it, through the checkpoint journal
//! (`store::journal`), so it is consistent on disk at every moment.

use std::fs::File;
use std::path::{Path, PathBuf};

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromZeros, IntoBytes};

use crate::error::{Error, Result};
use crate::format::{self, DurableHeader, HEADER_SLOTS, PAGE, VERSION};
use crate::fs::{self, pread, pwrite};
use crate::options::Durability;
use crate::sys;

/// The durable image, opened.
#[derive(Debug)]
pub(crate) struct Durable {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// The newest valid header.
    pub(crate) header: DurableHeader,
    /// Which slot holds it.
    slot: usize,
}

/// Reads and validates the header of a durable image.
#[allow(clippy::too_many_lines)] // one check after another, each with its own error
pub(crate) fn read_header(file: &File, path: &Path) -> Result<(DurableHeader, usize)> {
    let file_len = fs::file_len(file, path)?;
    let hsize = std::mem::size_of::<DurableHeader>() as u64;
    if file_len < HEADER_SLOTS[1] + hsize {
        if file_len >= 8 {
            let mut magic = [0u8; 8];
            pread(file, path, &mut magic, 0)?;
            if magic != format::DURABLE_MAGIC {
                return Err(Error::Foreign {
                    path: path.into(),
                    what: "no mapstate header".into(),
                });
            }
        } else if file_len > 0 {
            return Err(Error::Foreign {
                path: path.into(),
                what: format!("only {file_len} bytes"),
            });
        }
        return Err(Error::Truncated {
            path: path.into(),
            len: file_len,
            expected: PAGE,
        });
    }
    let mut best: Option<(DurableHeader, usize)> = None;
    let mut saw_magic = false;
    let mut newest_version = 0;
    for (i, &off) in HEADER_SLOTS.iter().enumerate() {
        let mut h = DurableHeader::new_zeroed();
        pread(file, path, h.as_mut_bytes(), off)?;
        if h.magic != format::DURABLE_MAGIC {
            continue;
        }
        saw_magic = true;
        if !h.checksum_ok() {
            continue;
        }
        newest_version = newest_version.max(h.version.get());
        if h.version.get() > VERSION {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(b, _)| h.generation.get() > b.generation.get())
        {
            best = Some((h, i));
        }
    }
    if newest_version > VERSION {
        return Err(Error::TooNew {
            path: path.into(),
            version: newest_version,
            supported: VERSION,
        });
    }
    let Some((h, slot)) = best else {
        return Err(if saw_magic {
            Error::Corrupt {
                path: path.into(),
                what: "both header copies fail their checksum".into(),
            }
        } else {
            Error::Foreign {
                path: path.into(),
                what: "no mapstate header".into(),
            }
        });
    };
    check_fields(&h).map_err(|what| Error::Corrupt {
        path: path.into(),
        what,
    })?;
    let expected = PAGE + h.len.get();
    if file_len < expected {
        return Err(Error::Truncated {
            path: path.into(),
            len: file_len,
            expected,
        });
    }
    check_counters(&h).map_err(|what| Error::Corrupt {
        path: path.into(),
        what,
    })?;
    Ok((h, slot))
}

/// The field checks every header must pass (a checksum only says the bytes
/// are the ones written, not that they make sense).
pub(crate) fn check_fields(h: &DurableHeader) -> std::result::Result<(), String> {
    if u64::from(h.page_size.get()) != PAGE {
        return Err(format!("page size {} (expected {PAGE})", h.page_size.get()));
    }
    let max = h.max_size.get();
    if max > fs::MAX_RESERVATION || max % PAGE != 0 || max == 0 {
        return Err(format!("maximum size {max} is invalid"));
    }
    if h.len.get() > max {
        return Err(format!(
            "length {} exceeds the maximum size {max}",
            h.len.get()
        ));
    }
    if Durability::from_code(h.durability.get(), h.durability_arg.get()).is_none() {
        return Err(format!("unknown durability mode {}", h.durability.get()));
    }
    Ok(())
}

/// Sequence numbers are doubled in the sequence lock and generations count
/// up: both must leave room.
pub(crate) fn check_counters(h: &DurableHeader) -> std::result::Result<(), String> {
    if h.checkpoint_seq.get() > 1 << 62 || h.generation.get() > 1 << 62 {
        return Err("sequence number or generation out of range".into());
    }
    Ok(())
}

impl Durable {
    /// Opens an existing durable image and reads its header.
    pub(crate) fn open(file: File, path: &Path) -> Result<Self> {
        let (header, slot) = read_header(&file, path)?;
        Ok(Self {
            file,
            path: path.into(),
            header,
            slot,
        })
    }

    /// Writes the first header and the (zeroed, allocated) data area of a new
    /// state into an empty file, then syncs it.
    pub(crate) fn initialize(
        file: File,
        path: &Path,
        len: u64,
        max_size: u64,
        durability: Durability,
    ) -> Result<Self> {
        let mut file_id = [0u8; 16];
        sys::random_bytes(&mut file_id);
        let mut h = DurableHeader::new_zeroed();
        h.magic = format::DURABLE_MAGIC;
        h.version = U32::new(VERSION);
        h.page_size = U32::new(PAGE as u32);
        h.file_id = file_id;
        h.generation = U64::new(1);
        h.len = U64::new(len);
        h.max_size = U64::new(max_size);
        h.log_salt = U64::new(sys::random_u64());
        let (code, arg) = durability.to_code();
        h.durability = U64::new(code);
        h.durability_arg = U64::new(arg);
        h.seal();
        fs::allocate(path, &file, 0, PAGE + len)?;
        pwrite(&file, path, h.as_bytes(), HEADER_SLOTS[0])?;
        let mut d = Self {
            file,
            path: path.into(),
            header: h,
            slot: 0,
        };
        d.sync()?;
        Ok(d)
    }

    /// `fdatasync` of the image.
    pub(crate) fn sync(&mut self) -> Result<()> {
        fs::fdatasync(&self.file, &self.path)
    }

    /// Writes `h` into the slot not holding the current header (the caller syncs).
    pub(crate) fn write_header(&mut self, mut h: DurableHeader) -> Result<()> {
        h.seal();
        let slot = 1 - self.slot;
        pwrite(&self.file, &self.path, h.as_bytes(), HEADER_SLOTS[slot])?;
        self.header = h;
        self.slot = slot;
        Ok(())
    }

    /// Reads data bytes at `off` of the state.
    pub(crate) fn read_data(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        pread(&self.file, &self.path, buf, PAGE + off)
    }

    /// Writes data bytes at `off` of the state.
    pub(crate) fn write_data(&self, off: u64, buf: &[u8]) -> Result<()> {
        pwrite(&self.file, &self.path, buf, PAGE + off)
    }

    /// Makes sure the data area holds `len` bytes, with blocks allocated
    /// (the image is fully allocated up to the header's length already).
    pub(crate) fn reserve(&self, len: u64) -> Result<()> {
        fs::allocate(
            &self.path,
            &self.file,
            PAGE + self.header.len.get(),
            PAGE + len,
        )
    }
}
