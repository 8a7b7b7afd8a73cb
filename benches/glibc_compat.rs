//! `arc4random` for glibc older than 2.36 (Ubuntu 22.04 has 2.35), compiled into the
//! `gpu_timings` example and, through it, into the parity suite that `scripts/gpu-check.sh`
//! carries to a GPU machine.
//!
//! Their `cuda` builds link LLVM statically, and Debian's LLVM (the script's
//! `LLVM_SYSTEM_PREFIX`) calls glibc 2.36's `arc4random`: the binaries would then ask for
//! `GLIBC_2.36` and not start on an older system. With this definition in the executable, the
//! linker binds those calls here and the binary needs glibc 2.35 at most. Elsewhere it only
//! shadows glibc's own `arc4random`, with the same contract (a uniformly random `u32` from the
//! kernel's generator).

/// A uniformly random `u32`, read from `/dev/urandom`; should that fail, a value derived from
/// the standard library's randomly seeded hasher.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[unsafe(no_mangle)]
pub extern "C" fn arc4random() -> u32 {
    use std::hash::BuildHasher;
    use std::io::Read;

    let mut bytes = [0u8; 4];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    match read {
        Ok(()) => u32::from_ne_bytes(bytes),
        Err(_) => {
            std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now())
                as u32
        }
    }
}
