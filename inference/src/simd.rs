//! Runtime selection of SIMD code paths for plain loops.
//!
//! The workspace builds for baseline x86-64, where the compiler vectorises loops 4 lanes wide
//! (SSE2). [`simd_dispatch!`] compiles the same loop body again for AVX-512 and for AVX2 and
//! picks the widest the CPU has at run time (std's `is_x86_feature_detected!` caches its
//! answer), so element-wise kernels get 16 lanes without unsafe intrinsics. The `multiversion`
//! crate does the same with more machinery; this is the one pattern we need.

/// Defines `$name`, which runs `$body` (an `#[inline(always)]` function of the same
/// arguments) compiled for AVX-512 or AVX2 when the CPU has them, and as built otherwise.
macro_rules! simd_dispatch {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:ident) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use simd_dispatch;
