//! Dot products of f32 vectors, with the widest SIMD the CPU has (chosen once, at run time),
//! and a prefetch hint for the vector that will be read next.

/// A dot product of two vectors of the same length.
pub(crate) type Dot = fn(&[f32], &[f32]) -> f32;

/// The fastest dot product this CPU runs.
pub(crate) fn best() -> Dot {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return x86::dot_avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return x86::dot_avx2;
        }
    }
    scalar
}

/// The name of what [`best`] chose, for benchmarks and diagnostics.
pub fn kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2+fma";
        }
    }
    "scalar"
}

/// Portable: eight independent sums, which compilers vectorise.
pub(crate) fn scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// Asks the CPU to start loading the first `lines` cache lines at `at`.
#[inline(always)]
pub(crate) fn prefetch(at: *const u32, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in 0..lines {
        // SAFETY: a prefetch never faults, whatever the address; `wrapping_add` keeps the
        // address computation defined.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                at.wrapping_add(line * 16).cast::<i8>(),
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, lines);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    pub(super) fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `best` returns this only when the CPU has AVX2 and FMA.
        unsafe { avx2(a, b) }
    }

    pub(super) fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `best` returns this only when the CPU has AVX-512F.
        unsafe { avx512(a, b) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 8 floats below `n` in both slices.
        unsafe {
            while i + 32 <= n {
                for (j, sum) in acc.iter_mut().enumerate() {
                    let x = _mm256_loadu_ps(pa.add(i + 8 * j));
                    let y = _mm256_loadu_ps(pb.add(i + 8 * j));
                    *sum = _mm256_fmadd_ps(x, y, *sum);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
                i += 8;
            }
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let x = _mm_add_ps(_mm256_extractf128_ps::<1>(s), _mm256_castps256_ps128(s));
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let x = _mm_add_ss(x, _mm_shuffle_ps::<1>(x, x));
        let mut total = _mm_cvtss_f32(x);
        while i < n {
            total += a[i] * b[i];
            i += 1;
        }
        total
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 16 floats below `n` in both slices.
        unsafe {
            while i + 64 <= n {
                for (j, sum) in acc.iter_mut().enumerate() {
                    let x = _mm512_loadu_ps(pa.add(i + 16 * j));
                    let y = _mm512_loadu_ps(pb.add(i + 16 * j));
                    *sum = _mm512_fmadd_ps(x, y, *sum);
                }
                i += 64;
            }
            while i + 16 <= n {
                acc[0] =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc[0]);
                i += 16;
            }
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        let mut total = _mm512_reduce_add_ps(s);
        while i < n {
            total += a[i] * b[i];
            i += 1;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU can run (the others cannot be tested here).
    fn kernels() -> Vec<(&'static str, Dot)> {
        let mut kernels: Vec<(&'static str, Dot)> = vec![("scalar", scalar)];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                kernels.push(("avx2+fma", x86::dot_avx2));
            }
            if has!("avx512f") {
                kernels.push(("avx512f", x86::dot_avx512));
            }
        }
        println!("kernels tested: {:?}", kernels.iter().map(|k| k.0).collect::<Vec<_>>());
        kernels
    }

    #[test]
    fn every_kernel_agrees_with_the_plain_sum() {
        let a: Vec<f32> = (0..389).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let b: Vec<f32> = (0..389).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
        let kernels = kernels();
        for n in [0, 1, 7, 8, 15, 16, 31, 33, 64, 100, 384, 389] {
            let plain: f64 = a[..n].iter().zip(&b[..n]).map(|(x, y)| *x as f64 * *y as f64).sum();
            for &(name, dot) in &kernels {
                let got = dot(&a[..n], &b[..n]) as f64;
                assert!((got - plain).abs() < 1e-3, "{name} at {n}: {got} against {plain}");
            }
        }
    }
}
