//! Arrays of atomics in an anonymous `MAP_SHARED` mapping: one memory for the threads of a
//! process and for every process forked after it is made (the Fork and PreFork models), and
//! the lock word that guards multi-word updates in it. Used by the shared rate limits
//! (handlers/limits.rs) and the admission table (servers/admission.rs).

use std::num::NonZeroUsize;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A type made only of atomics, for which all-zero bytes are a valid value: what a fresh
/// anonymous mapping holds, and what may be shared between processes.
///
/// # Safety
/// Implement only for `repr(C)` types whose every field is an atomic integer (or such a
/// type), with an alignment below the page size.
#[allow(unsafe_code)]
pub(crate) unsafe trait ZeroedAtomics: Default + Sync {}

// SAFETY: atomic integers are valid when zeroed and need no alignment beyond 8 bytes.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for AtomicU32 {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for AtomicU64 {}

/// Where the elements live.
enum Memory<T: 'static> {
    /// An anonymous shared mapping (survives fork; shared with children).
    Mapped(&'static [T]),
    /// Ordinary memory, used only if mmap(2) fails: shared by threads, not by processes.
    Heap(Box<[T]>),
}

/// `len` zeroed `T`s in shared memory, unmapped when dropped (a forked child keeps its own
/// mapping of the same pages until it exits).
pub(crate) struct SharedArray<T: ZeroedAtomics + 'static> {
    mem: Memory<T>,
}

impl<T: ZeroedAtomics> SharedArray<T> {
    /// Maps `len` elements (at least one). If mmap(2) fails it falls back to ordinary
    /// memory, logging a warning that names `what`.
    pub(crate) fn new(len: usize, what: &str) -> SharedArray<T> {
        let len = len.max(1);
        let mem = match map_shared::<T>(len) {
            Ok(s) => Memory::Mapped(s),
            Err(e) => {
                log::warn!("mmap of the shared {what} failed ({e}); they hold per process");
                Memory::Heap((0..len).map(|_| T::default()).collect())
            }
        };
        SharedArray { mem }
    }

    /// True when the elements live in shared memory and so hold across `fork()`.
    pub(crate) fn is_process_shared(&self) -> bool {
        matches!(self.mem, Memory::Mapped(_))
    }
}

impl<T: ZeroedAtomics> Deref for SharedArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.mem {
            Memory::Mapped(s) => s,
            Memory::Heap(s) => s,
        }
    }
}

impl<T: ZeroedAtomics> Drop for SharedArray<T> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Memory::Mapped(s) = self.mem {
            let len = mapping_len::<T>(s.len());
            if let Some(p) = std::ptr::NonNull::new(s.as_ptr() as *mut std::ffi::c_void) {
                // SAFETY: `s` is the whole mapping made by `map_shared` with this length;
                // `self` is its only owner and is going away, and no reference into it
                // outlives `self` (borrows are tied to `&self`).
                let _ = unsafe { nix::sys::mman::munmap(p, len) };
            }
        }
    }
}

fn mapping_len<T>(len: usize) -> usize {
    let bytes = len.saturating_mul(std::mem::size_of::<T>());
    bytes.div_ceil(4096).max(1) * 4096
}

#[allow(unsafe_code)]
fn map_shared<T: ZeroedAtomics>(len: usize) -> nix::Result<&'static [T]> {
    use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
    let bytes = NonZeroUsize::new(mapping_len::<T>(len)).ok_or(nix::errno::Errno::EINVAL)?;
    // SAFETY: a fresh anonymous mapping aliases no Rust object. The kernel returns it
    // page-aligned and zero-filled; `T: ZeroedAtomics` is `repr(C)`, made only of atomics
    // (aligned below a page) for which all-zero bytes are a valid value, and `bytes` covers
    // `len` of them. The slice is only ever used through atomics, so sharing it with
    // threads and forked processes is sound. It lives until `SharedArray::drop` unmaps it.
    unsafe {
        let p = mmap_anonymous(
            None,
            bytes,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )?;
        Ok(std::slice::from_raw_parts(p.as_ptr() as *const T, len))
    }
}

/// A spin lock in shared memory: the word holds the locker's pid (0 when free). A lock left
/// by a process that died is taken over (checked with kill(pid, 0)); critical sections are a
/// few dozen loads and stores, so waiting spins, then yields.
pub(crate) fn lock<'a>(word: &'a AtomicU32, what: &str) -> LockGuard<'a> {
    let me = std::process::id().max(1);
    let mut spins: u32 = 0;
    loop {
        match word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return LockGuard(word),
            Err(holder) => {
                spins = spins.wrapping_add(1);
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                if spins % 4096 == 0
                    && holder != 0
                    && holder != me
                    && !process_alive(holder)
                    && word
                        .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    log::warn!("took over the {what} lock of dead process {holder}");
                    return LockGuard(word);
                }
            }
        }
    }
}

/// Holds a [`lock`] until dropped.
pub(crate) struct LockGuard<'a>(&'a AtomicU32);

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// True unless `pid` is known not to exist.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_and_shared() {
        let a: SharedArray<AtomicU64> = SharedArray::new(1000, "test");
        assert!(a.is_process_shared());
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|x| x.load(Ordering::Relaxed) == 0));
        a[999].store(7, Ordering::Relaxed);
        assert_eq!(a[999].load(Ordering::Relaxed), 7);
    }

    #[test]
    fn a_dead_lock_holder_is_taken_over() {
        let w = AtomicU32::new(0x7fff_fff0); // above the kernel's pid_max
        drop(lock(&w, "test"));
        assert_eq!(w.load(Ordering::Relaxed), 0);
    }
}
