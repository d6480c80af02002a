//! The report of `check-fs`, as text or JSON.

use std::path::Path;

use mapstate::FsClass;
use serde_json::{Value, json};

use super::Check;
use super::storage::Mount;
use super::verdicts::Verdict;
use crate::util;

/// The width of the text report.
const WIDTH: usize = 80;

/// What `check-fs` prints.
pub(super) struct Report<'a> {
    pub(super) dir: &'a Path,
    pub(super) mount: &'a Mount,
    /// Bytes free for live images, when `/dev/shm` is a tmpfs.
    pub(super) live_free: Option<u64>,
    pub(super) checks: Vec<Check>,
    pub(super) verdicts: Vec<Verdict>,
}

impl Report<'_> {
    /// Whether a check failed or a guarantee does not hold.
    pub(super) fn violated(&self) -> bool {
        self.verdicts.iter().any(|v| v.holds == Some(false))
            || self.checks.iter().any(|c| c.ok == Some(false))
    }

    /// Prints the report, as JSON when `json`.
    pub(super) fn print(&self, json: bool) {
        if json {
            self.print_json();
        } else {
            self.print_text();
        }
    }

    fn print_json(&self) {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| json!({"check": c.name, "result": c.result, "ok": c.ok}))
            .collect();
        let verdicts: Vec<Value> = self
            .verdicts
            .iter()
            .map(|v| json!({"guarantee": v.guarantee, "holds": v.holds, "verdict": v.why}))
            .collect();
        println!(
            "{}",
            json!({"dir": self.dir, "filesystem": self.mount.name, "mount": self.mount.shown,
                   "live_image_free": self.live_free, "checks": checks, "verdicts": verdicts,
                   "ok": !self.violated()})
        );
    }

    fn print_text(&self) {
        println!("check-fs {} ({})", self.dir.display(), self.mount.shown);
        for c in &self.checks {
            let mark = match (c.ok, c.warn) {
                (Some(true), _) => "ok",
                (Some(false), _) => "FAIL",
                (None, true) => "warn",
                (None, false) => "info",
            };
            println!(
                "{}",
                util::wrap(&format!("  {mark:<5} {:<13} ", c.name), &c.result, WIDTH)
            );
        }
        println!("guarantees here:");
        for v in &self.verdicts {
            let mark = match v.holds {
                Some(true) => "yes",
                Some(false) => "NO",
                None if self.mount.class == FsClass::Memory && v.guarantee.starts_with("power") => {
                    "n/a"
                }
                None => "?",
            };
            println!(
                "{}",
                util::wrap(&format!("  {mark:<4} "), v.guarantee, WIDTH)
            );
            println!("{}", util::wrap("       ", &v.why, WIDTH));
        }
    }
}
