//! Flushing denormal (subnormal) floats to zero on the CPU threads that compute.
//!
//! x86 processors compute with denormal operands (magnitudes below 1.2e-38 in f32) through
//! microcode assists, tens to hundreds of times slower than with normal ones. A network whose
//! activations underflow — a SiLU of a large negative input is one, `x·σ(x)` with `σ(−100)` ≈
//! 3.7e-44 — then runs at a fraction of its speed: a MoVQ decode of latents of magnitude ~100
//! (what 25 steps of a random-weight UNet leave) took 9x as long as of N(0, 1) ones, the same
//! work (`benches/examples/movq_profile.rs`, BENCHMARKS.md). Setting the FTZ
//! (flush-to-zero) and DAZ (denormals-are-zero) bits of the MXCSR register makes such values
//! zeros: a change below 1.2e-38 in absolute terms, far under every tolerance of the parity
//! tests, and what inference runtimes commonly do on the CPU.
//!
//! [`FlushDenormals::enter`] sets them on the calling thread until the guard is dropped and,
//! once per process, on the threads of rayon's global pool, which burn's `flex` backend (and
//! the matrix multiply under it) compute on; they keep the setting (they are compute threads
//! shared by everything in the process that uses rayon's global pool). Every generation of a
//! [`crate::Kandinsky`] and of its stages enters it. On other processors (Arm's handle
//! denormals at full speed) it does nothing.

use std::sync::Once;

/// While alive, denormal floats are flushed to zero on this thread (and, from the first one on,
/// on rayon's global pool). See the [module documentation](self).
#[must_use = "the setting is restored when the guard is dropped"]
pub struct FlushDenormals {
    #[cfg_attr(
        not(any(target_arch = "x86", target_arch = "x86_64")),
        allow(dead_code)
    )]
    previous: Option<u32>,
}

/// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
const FTZ_DAZ: u32 = 0x8040;

impl FlushDenormals {
    /// Flushes denormals on this thread until the guard is dropped, and on rayon's global pool
    /// from now on (which builds the pool if nothing has yet).
    pub fn enter() -> Self {
        static POOL: Once = Once::new();
        POOL.call_once(|| {
            rayon::broadcast(|_| {
                std::mem::forget(Self::this_thread());
            });
        });
        Self::this_thread()
    }

    /// Sets the bits on the calling thread only.
    fn this_thread() -> Self {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            let previous = mxcsr::get();
            // SAFETY: only the FTZ and DAZ bits change: no exception is unmasked and the
            // rounding mode stays; code compiled for the default environment computes the same
            // results except that denormal inputs and outputs read as zero.
            unsafe { mxcsr::set(previous | FTZ_DAZ) };
            Self {
                previous: Some(previous),
            }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        Self { previous: None }
    }

    /// Whether denormals are flushed on the calling thread now.
    pub fn active() -> bool {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        return mxcsr::get() & FTZ_DAZ == FTZ_DAZ;
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        false
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if let Some(previous) = self.previous {
            // SAFETY: restores the value read from this thread's register in `this_thread`.
            unsafe { mxcsr::set(previous) };
        }
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod mxcsr {
    use std::arch::asm;

    pub fn get() -> u32 {
        let mut value: u32 = 0;
        // SAFETY: stores the 32-bit MXCSR register into `value`, which lives on our stack.
        unsafe {
            asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags));
        }
        value
    }

    /// # Safety
    /// `value` must be a valid MXCSR value that leaves the exception masks as they were.
    pub unsafe fn set(value: u32) {
        // SAFETY: the caller passes a valid value; `ldmxcsr` reads 32 bits from it.
        unsafe {
            asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, preserves_flags, readonly));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard flushes a denormal product to zero and restores the thread's setting.
    #[test]
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    fn flushes_and_restores() {
        let tiny = std::hint::black_box(1e-30f32);
        let before = FlushDenormals::active();
        {
            let _guard = FlushDenormals::enter();
            assert!(FlushDenormals::active());
            // 1e-30 × 1e-10 = 1e-40: a denormal without the flag, zero with it.
            let product = std::hint::black_box(tiny) * std::hint::black_box(1e-10f32);
            assert_eq!(product, 0.0);
            // The pool's threads keep it.
            assert!(
                rayon::broadcast(|_| FlushDenormals::active())
                    .into_iter()
                    .all(|a| a)
            );
        }
        assert_eq!(FlushDenormals::active(), before);
        let product = std::hint::black_box(tiny) * std::hint::black_box(1e-10f32);
        assert_eq!(product != 0.0, !before);
    }
}
