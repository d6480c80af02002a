//! What the replication log holds: each entry is one [`Record`], encoded as
//! little-endian fields with an xxh3 checksum at the end.
//!
//! | field | bytes |
//! |---|---|
//! | magic `MSR1` | 4 |
//! | kind: 1 commit, 2 snapshot | 1 |
//! | sequence number | 8 |
//! | length after it | 8 |
//! | commit: zeroed range (start, end; `u64::MAX` twice for none) | 16 |
//! | commit: number of ranges n, then n × (start, end), then their bytes | 4 + 16n + … |
//! | snapshot: the object's name (length, UTF-8) | 4 + … |
//! | xxh3-64 of everything above | 8 |

use mapstate::Commit;

const MAGIC: &[u8; 4] = b"MSR1";
const COMMIT: u8 = 1;
const SNAPSHOT: u8 = 2;
const NONE: u64 = u64::MAX;

/// One entry of the replication log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A commit, to apply after the one before it.
    Commit(Commit),
    /// The whole state as of commit `seq`, an object in the snapshot
    /// bucket: a follower behind `seq` starts again from it.
    Snapshot {
        /// The commit it holds.
        seq: u64,
        /// The state's length then.
        len: u64,
        /// The object's name in the bucket.
        object: String,
    },
}

impl Record {
    /// The sequence number of the commit it is or holds.
    pub fn seq(&self) -> u64 {
        match self {
            Record::Commit(c) => c.seq,
            Record::Snapshot { seq, .. } => *seq,
        }
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        match self {
            Record::Commit(c) => {
                b.push(COMMIT);
                put(&mut b, c.seq);
                put(&mut b, c.len);
                let (zs, ze) = c.zeroed.as_ref().map_or((NONE, NONE), |z| (z.start, z.end));
                put(&mut b, zs);
                put(&mut b, ze);
                b.extend_from_slice(&(c.ranges.len() as u32).to_le_bytes());
                for r in &c.ranges {
                    put(&mut b, r.start);
                    put(&mut b, r.end);
                }
                b.extend_from_slice(&c.data);
            }
            Record::Snapshot { seq, len, object } => {
                b.push(SNAPSHOT);
                put(&mut b, *seq);
                put(&mut b, *len);
                b.extend_from_slice(&(object.len() as u32).to_le_bytes());
                b.extend_from_slice(object.as_bytes());
            }
        }
        let sum = xxhash_rust::xxh3::xxh3_64(&b);
        put(&mut b, sum);
        b
    }

    /// Decodes a record; `Err` says what is wrong with the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        let body_len = bytes
            .len()
            .checked_sub(8)
            .ok_or("shorter than a checksum")?;
        let (body, sum) = bytes.split_at(body_len);
        if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != sum {
            return Err("checksum mismatch".into());
        }
        let mut r = Cursor(body);
        if r.take(4)? != MAGIC {
            return Err("not a mapstate replication record (magic)".into());
        }
        let kind = r.take(1)?[0];
        let seq = r.u64()?;
        let len = r.u64()?;
        let rec = match kind {
            COMMIT => {
                let (zs, ze) = (r.u64()?, r.u64()?);
                let n = r.u32()? as usize;
                let mut ranges = Vec::with_capacity(n.min(1 << 16));
                let mut total: u64 = 0;
                for _ in 0..n {
                    let (s, e) = (r.u64()?, r.u64()?);
                    if e < s {
                        return Err(format!("range {s}..{e}"));
                    }
                    total = total.checked_add(e - s).ok_or("ranges overflow")?;
                    ranges.push(s..e);
                }
                let data = r.0.to_vec();
                if data.len() as u64 != total {
                    return Err(format!("{} data bytes for ranges of {total}", data.len()));
                }
                let zeroed = match (zs, ze) {
                    (NONE, NONE) => None,
                    (s, e) if s <= e => Some(s..e),
                    (s, e) => return Err(format!("zeroed range {s}..{e}")),
                };
                Record::Commit(Commit {
                    seq,
                    len,
                    zeroed,
                    ranges,
                    data,
                })
            }
            SNAPSHOT => {
                let n = r.u32()? as usize;
                let object = String::from_utf8(r.take(n)?.to_vec()).map_err(|e| e.to_string())?;
                Record::Snapshot { seq, len, object }
            }
            k => return Err(format!("unknown record kind {k}")),
        };
        Ok(rec)
    }
}

fn put(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let c = Record::Commit(Commit {
            seq: 7,
            len: 100,
            zeroed: Some(50..60),
            ranges: vec![0..3, 90..100],
            data: (0..13).collect(),
        });
        let s = Record::Snapshot {
            seq: 9,
            len: 4096,
            object: "snap-9".into(),
        };
        for r in [&c, &s] {
            let b = r.encode();
            assert_eq!(&Record::decode(&b).unwrap(), r);
            for i in 0..b.len() {
                let mut bad = b.clone();
                bad[i] ^= 1;
                assert!(
                    Record::decode(&bad).is_err(),
                    "byte {i} flipped was accepted"
                );
            }
            assert!(Record::decode(&b[..b.len() - 1]).is_err());
        }
    }
}
