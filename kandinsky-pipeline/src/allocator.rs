//! Keeping freed memory for reuse instead of handing it back to the system, for programs that
//! compute on the CPU.
//!
//! On the CPU every tensor op allocates its output, and a diffusion step allocates and frees
//! the same large buffers again and again: a MoVQ decode at 512×512 holds 134 MB activations,
//! a UNet step tens of MB each. glibc's malloc serves blocks above 32 MB (and, after a free,
//! the top of its heap beyond its trim threshold) straight from and back to the system, so
//! each such buffer is faulted in afresh, page by page, on every op: on the development VM
//! (Firecracker) a 3×3 convolution at 512² with 128 channels spent as long faulting in its
//! buffers as computing. [`retain_freed_memory`] turns that off: every block comes from
//! malloc's heap and freed memory stays there for the next op.
//!
//! The price: the process's resident memory does not shrink after a peak (the freed memory is
//! reused by the next allocations, so the peak itself does not grow). A program that generates
//! and exits (the `kandinsky` command) or that keeps its models loaded (a server) loses
//! nothing; a long-running program that wants memory back after a generation should not call
//! it. It is process-wide, so it is the program's choice, not the library's: the `kandinsky`
//! command and the benchmarks call it at start.

/// Makes malloc keep freed memory for reuse (glibc on Linux; elsewhere it does nothing and
/// returns `false`). Call once, early in `main`, before large allocations.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's tuning parameters; each call reports success.
        unsafe {
            // Never serve a block by mmap (so never unmap one on free) …
            let no_mmap = libc::mallopt(libc::M_MMAP_MAX, 0) == 1;
            // … and never give the top of the heap back.
            let no_trim = libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1;
            no_mmap && no_trim
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}
