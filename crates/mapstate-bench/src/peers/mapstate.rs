//! mapstate itself. Each workload's adapter arrives with the capability it
//! measures; until then its rows say "not implemented".
//!
//! To add one: match the workload in `run` (and, for w5, notify and reopen,
//! in `child`), following the peers in this folder.

use crate::harness::{Ctx, Result, Workload};
use crate::peers::{System, na};
use crate::report::Outcome;

/// mapstate (this repository).
pub(crate) struct Mapstate;

impl System for Mapstate {
    fn name(&self) -> &'static str {
        "mapstate"
    }

    fn run(&self, _workload: Workload, _cx: &Ctx) -> Result<Outcome> {
        Ok(na("not implemented"))
    }
}
