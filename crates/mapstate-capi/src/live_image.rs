//! Where a handle's live image came from, as static C strings
//! (`mapstate_reader_live_image`, `mapstate_writer_live_image`).

use std::collections::HashMap;
use std::ffi::{CString, c_char};
use std::sync::{Mutex, PoisonError};

use mapstate_rs::LiveImage;

/// A NUL-terminated copy of one of the library's static names, made once
/// and kept for the life of the process (the names are few and fixed).
fn static_c(name: &'static str) -> *const c_char {
    static NAMES: Mutex<Option<HashMap<&'static str, &'static std::ffi::CStr>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    names
        .get_or_insert_with(HashMap::new)
        .entry(name)
        .or_insert_with(|| {
            let c = CString::new(name).unwrap_or_else(|_| CString::from(c"?"));
            Box::leak(c.into_boxed_c_str())
        });
    names
        .as_ref()
        .and_then(|m| m.get(name))
        .map_or(c"?".as_ptr(), |c| c.as_ptr())
}

/// Writes `li`'s origin to `*origin` and why it was built (or NULL) to
/// `*rebuilt_because` if that is not NULL.
///
/// # Safety
///
/// `origin` is writable; `rebuilt_because` is NULL or writable.
pub(crate) unsafe fn write(
    li: LiveImage,
    origin: *mut *const c_char,
    rebuilt_because: *mut *const c_char,
) {
    // SAFETY: the caller promises `origin` is writable.
    unsafe { origin.write(static_c(li.name())) };
    let why = li
        .rebuilt()
        .map_or(std::ptr::null(), |w| static_c(w.name()));
    // SAFETY: the caller promises NULL or writable.
    unsafe { crate::handle::put(rebuilt_because, why) };
}
