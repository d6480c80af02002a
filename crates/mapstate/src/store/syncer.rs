//! The background syncer of `Durability::Periodic`: a thread
//! (`mapstate-syncer`) that `fdatasync`s the log every interval, so that
//! `Periodic` commits cost what `PageCache` ones do and a power cut loses
//! at most the commits of the last interval (plus one `fdatasync`).

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys;

/// A running syncer; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Syncer {
    stop: Option<mpsc::Sender<()>>,
    failed: Arc<Mutex<Option<String>>>,
    /// Set once `failed` holds a message: a load per commit, no lock.
    flag: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts syncing `log` (the file at `path`) every `every`.
    pub(crate) fn start(log: File, path: PathBuf, every: Duration) -> Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let failed = Arc::new(Mutex::new(None));
        let report = failed.clone();
        let flag = Arc::new(AtomicBool::new(false));
        let raise = flag.clone();
        let thread = std::thread::Builder::new()
            .name("mapstate-syncer".into())
            .spawn(move || {
                // The channel's timeout is the timer; a message or a closed
                // channel is the stop signal.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    if let Err(e) = sys::fdatasync(sys::fd_of(&log)) {
                        let msg = Error::io("fdatasync", &path, e).to_string();
                        *report.lock().unwrap_or_else(PoisonError::into_inner) = Some(msg);
                        raise.store(true, Ordering::Release);
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("spawn the syncer thread", PathBuf::new(), e))?;
        Ok(Self {
            stop: Some(stop),
            failed,
            flag,
            thread: Some(thread),
        })
    }

    /// The failure of a background sync, if one failed.
    pub(crate) fn failure(&self) -> Option<String> {
        if !self.flag.load(Ordering::Acquire) {
            return None;
        }
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
