//! Relay buffers, reused across connections: a connection per request would
//! otherwise allocate, zero and free two buffers each time (and glibc consolidates
//! its free lists on every allocation of this size).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Bytes read from one side before they are written to the other.
pub(super) const BUFFER_SIZE: usize = 8 * 1024;

/// Free buffers kept per thread (1 MiB at most); more are freed.
const POOL_MAX: usize = 128;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of [`BUFFER_SIZE`] bytes from the pool of the thread that takes it;
/// back to the pool of the thread that drops it.
pub(super) struct Buffer(Box<[u8]>);

impl Buffer {
    pub(super) fn take() -> Self {
        let reused = POOL.with(|pool| pool.borrow_mut().pop());
        Buffer(reused.unwrap_or_else(|| vec![0; BUFFER_SIZE].into_boxed_slice()))
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        // During thread teardown the pool may be gone; the buffer is freed then.
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_MAX {
                pool.push(bytes);
            }
        });
    }
}

impl Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// Buffers in this thread's pool.
#[cfg(test)]
pub(super) fn pooled() -> usize {
    POOL.with(|pool| pool.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_taken_again_and_the_pool_is_bounded() {
        let first = Buffer::take();
        assert_eq!(first.len(), BUFFER_SIZE);
        let before = pooled();
        let address = first.as_ptr();
        drop(first);
        assert_eq!(pooled(), before + 1);
        let again = Buffer::take();
        assert_eq!(again.as_ptr(), address, "the pooled buffer is reused");
        assert_eq!(pooled(), before);
        drop(again);

        let many: Vec<Buffer> = (0..POOL_MAX + 10).map(|_| Buffer::take()).collect();
        drop(many);
        assert_eq!(pooled(), POOL_MAX);
    }
}
