//! The bench binary's allocator: mimalloc (as in `cdp`), wrapped so that a scenario can measure how far
//! the live heap grows while it runs ([`Growth`]), whatever the allocator keeps or gives back to the
//! system (resident memory mixes both: mimalloc decommits freed pages after a delay and faults them in
//! again, so a process's resident size rises and falls with what it did before).
//!
//! Counting costs one relaxed load per allocation while no [`Growth`] is open, and two atomic updates
//! while one is.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes allocated less bytes freed since the open [`Growth`] began.
static NET: AtomicI64 = AtomicI64::new(0);
/// The highest `NET` reached.
static PEAK: AtomicI64 = AtomicI64::new(0);

/// mimalloc, counting bytes allocated and freed while a [`Growth`] is open.
pub struct Counting;

fn add(bytes: i64) {
    let now = NET.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on unchanged to mimalloc, which upholds `GlobalAlloc`'s contract; the
// counting only reads the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            add(layout.size() as i64);
        }
        mimalloc::MiMalloc.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            add(-(layout.size() as i64));
        }
        mimalloc::MiMalloc.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            add(layout.size() as i64);
        }
        mimalloc::MiMalloc.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            add(new_size as i64 - layout.size() as i64);
        }
        mimalloc::MiMalloc.realloc(ptr, layout, new_size)
    }
}

/// The live heap's growth from when it was opened: the peak of bytes allocated less bytes freed since
/// (memory allocated before and freed meanwhile counts against it). One at a time; `None` from
/// [`Growth::open`] when the binary's allocator is not [`Counting`] (then nothing is counted).
pub struct Growth(());

impl Growth {
    pub fn open() -> Option<Growth> {
        if !installed() {
            return None;
        }
        NET.store(0, Ordering::Relaxed);
        PEAK.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        Some(Growth(()))
    }

    /// Bytes allocated less bytes freed since it began (now, not the peak).
    pub fn now(&self) -> i64 {
        NET.load(Ordering::Relaxed)
    }

    /// The peak growth so far, in bytes.
    pub fn peak(&self) -> u64 {
        PEAK.load(Ordering::Relaxed).max(0) as u64
    }
}

impl Drop for Growth {
    fn drop(&mut self) {
        COUNTING.store(false, Ordering::Relaxed);
    }
}

/// Whether the process allocates through [`Counting`]: a probe allocation moves the count.
fn installed() -> bool {
    COUNTING.store(true, Ordering::Relaxed);
    let before = NET.load(Ordering::Relaxed);
    let probe = std::hint::black_box(vec![0u8; 4096]);
    let counted = NET.load(Ordering::Relaxed) != before;
    drop(probe);
    COUNTING.store(false, Ordering::Relaxed);
    counted
}
