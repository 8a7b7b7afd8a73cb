//! Matrix products in host memory (burn's CPU backend, f32) by the `gemm` crate, each call on
//! one thread, split across the compute threads here.
//!
//! burn-flex 0.22.1 hands a large product to `gemm` with its own threading, which at the
//! sizes of these models keeps two threads about as busy as one: a (154 × 1280) · (1280 ×
//! 1280) product, CLIP's projections, runs at ~73 GFLOP/s that way on the development machine
//! and at ~140 GFLOP/s as two single-threaded products over halves of the output.

use rayon::prelude::*;

/// A read-only matrix in host memory: element (i, j) at `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Matrix<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Matrix<'a> {
    /// A row-major matrix (row stride `cols`).
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Rows `r` of this matrix.
    fn rows(self, r: std::ops::Range<usize>) -> Self {
        Self {
            data: if r.is_empty() || self.cols == 0 {
                &[]
            } else {
                &self.data[r.start * self.row_stride..]
            },
            rows: r.len(),
            ..self
        }
    }

    /// Columns `c` of this matrix.
    fn cols(self, c: std::ops::Range<usize>) -> Self {
        Self {
            data: if c.is_empty() || self.rows == 0 {
                &[]
            } else {
                &self.data[c.start * self.col_stride..]
            },
            cols: c.len(),
            ..self
        }
    }

    /// Whether `data` holds every element the strides address.
    pub fn is_covered(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1)
                .checked_mul(self.row_stride)
                .and_then(|r| r.checked_add((self.cols - 1).checked_mul(self.col_stride)?))
                .is_some_and(|last| last < self.data.len())
    }
}

/// The raw pointer of an output some threads write disjoint parts of.
#[derive(Clone, Copy)]
struct Output(*mut f32);
// SAFETY: only used by `product_parallel` and `sum_of_products_parallel`, whose tasks write
// disjoint column ranges.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

impl Output {
    /// The element `offset` places on (a method, so closures capture the whole `Output`).
    ///
    /// # Safety
    /// `offset` must stay inside the output.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller keeps `offset` inside the output.
        unsafe { self.0.add(offset) }
    }
}

/// `dst` (lhs.rows × rhs.cols; element (i, j) at `i·dst_rs + j·dst_cs`) = lhs · rhs, or +=
/// with `accumulate`, on this thread.
///
/// # Safety
/// `dst` must be valid for writes of every element it addresses and no other thread may touch
/// them during the call.
unsafe fn gemm_raw(
    dst: *mut f32,
    (dst_rs, dst_cs): (usize, usize),
    lhs: Matrix<'_>,
    rhs: Matrix<'_>,
    accumulate: bool,
) {
    assert!(lhs.cols == rhs.rows && lhs.is_covered() && rhs.is_covered());
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: an element of `dst` the caller vouches for.
                    unsafe { *dst.add(i * dst_rs + j * dst_cs) = 0.0 };
                }
            }
        }
        return;
    }
    // SAFETY: `is_covered` makes both operands' strides stay inside their slices, which outlive
    // the call (it runs on this thread); the caller vouches for `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `dst` (m × n, row-major) = lhs (m × k) · rhs (k × n), or += with `accumulate`, on this
/// thread.
///
/// # Panics
/// If the shapes disagree or a slice is shorter than the matrix it must hold.
pub(crate) fn product(dst: &mut [f32], lhs: Matrix<'_>, rhs: Matrix<'_>, accumulate: bool) {
    assert!(dst.len() >= lhs.rows * rhs.cols);
    // SAFETY: `dst` is exclusively borrowed and holds the m × n row-major output.
    unsafe { gemm_raw(dst.as_mut_ptr(), (rhs.cols, 1), lhs, rhs, accumulate) }
}

/// Products smaller than this many multiply-adds run on one thread.
const PARALLEL_WORK: usize = 1 << 21;

/// Row count per thread from which the rows, not the columns, are split between threads: below
/// it, each thread would pack the whole right-hand side (a layer's weight) for few rows.
const ROWS_PER_THREAD: usize = 192;

/// [`product`] on the compute threads: each takes a band of the output's rows (many rows) or
/// of its columns (few rows; the right-hand side is then packed once in all) and runs one
/// single-threaded product on it.
///
/// # Panics
/// As [`product`].
pub(crate) fn product_parallel(
    dst: &mut [f32],
    lhs: Matrix<'_>,
    rhs: Matrix<'_>,
    accumulate: bool,
) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    assert!(lhs.cols == rhs.rows && dst.len() >= m * n);
    let threads = rayon::current_num_threads();
    if threads == 1 || m.saturating_mul(n).saturating_mul(k) < PARALLEL_WORK {
        return product(dst, lhs, rhs, accumulate);
    }
    if m >= ROWS_PER_THREAD * threads {
        let band = m.div_ceil(threads);
        dst[..m * n]
            .par_chunks_mut(band * n)
            .enumerate()
            .for_each(|(i, dst)| {
                let rows = i * band..(i * band + band).min(m);
                product(dst, lhs.rows(rows), rhs, accumulate);
            });
    } else {
        // Bands of whole 16-float vectors.
        let band = n.div_ceil(threads).next_multiple_of(16);
        let out = Output(dst.as_mut_ptr());
        (0..n.div_ceil(band)).into_par_iter().for_each(|i| {
            let cols = i * band..(i * band + band).min(n);
            // SAFETY: `dst` (exclusively borrowed for this call) holds the m × n output; this
            // task writes only columns `cols` of it, which no other task writes.
            unsafe { gemm_raw(out.at(cols.start), (n, 1), lhs, rhs.cols(cols), accumulate) };
        });
    }
}

/// Floats of a right-hand side band [`sum_of_products_parallel`] aims to keep in cache (1 MiB).
const CACHED_FLOATS: usize = 1 << 18;

/// `dst` (m × n, row-major) = Σ lhs_t · rhs_t over `(lhs_t, rhs_t) = term(t)` for t < `count`,
/// every lhs_t m × k_t and rhs_t k_t × n, on the compute threads, each taking bands of the
/// columns and summing the terms' products on them in order.
///
/// # Panics
/// As [`product`], for any term.
pub(crate) fn sum_of_products_parallel<'a>(
    dst: &mut [f32],
    count: usize,
    term: impl Fn(usize) -> (Matrix<'a>, Matrix<'a>) + Sync,
) {
    if count == 0 {
        return dst.fill(0.0);
    }
    let (first_lhs, first_rhs) = term(0);
    let (m, n) = (first_lhs.rows, first_rhs.cols);
    assert!(dst.len() >= m * n);
    let mut depth = 1;
    for t in 0..count {
        let (lhs, rhs) = term(t);
        assert!(lhs.rows == m && rhs.cols == n && lhs.cols == rhs.rows);
        depth = depth.max(lhs.cols);
    }
    // Bands of whole vectors whose right-hand sides (the terms' are often overlapping views of
    // one matrix) fit in a core's cache, so that every term after the first reads them there.
    let threads = rayon::current_num_threads();
    let band = (CACHED_FLOATS / depth)
        .min(n.div_ceil(threads))
        .next_multiple_of(16)
        .max(16);
    let out = Output(dst.as_mut_ptr());
    (0..n.div_ceil(band)).into_par_iter().for_each(|i| {
        let cols = i * band..(i * band + band).min(n);
        for t in 0..count {
            let (lhs, rhs) = term(t);
            // SAFETY: `dst` (exclusively borrowed for this call) holds the m × n output; this
            // task writes only columns `cols` of it, which no other task writes.
            unsafe {
                gemm_raw(
                    out.at(cols.start),
                    (n, 1),
                    lhs,
                    rhs.cols(cols.clone()),
                    t > 0,
                )
            };
        }
    });
}

/// `dst` (n × m, row-major) = (lhs (m × k) · rhs (k × n))ᵀ, on the compute threads, each
/// taking a band of rhs's columns (dst's rows).
///
/// This is the orientation in which `gemm` packs rhs fastest when rhs is column-major (a
/// PyTorch (out, in) Linear weight seen as (in, out)): its columns are then the operand it
/// broadcasts, read as a few contiguous streams, where a row-major output would have it
/// gather them element by element.
///
/// # Panics
/// As [`product`].
pub(crate) fn product_transposed_parallel(dst: &mut [f32], lhs: Matrix<'_>, rhs: Matrix<'_>) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    assert!(lhs.cols == rhs.rows && dst.len() >= m * n);
    let threads = rayon::current_num_threads();
    let band = if threads == 1 || m.saturating_mul(n).saturating_mul(k) < PARALLEL_WORK {
        n.max(1)
    } else {
        n.div_ceil(threads).max(1)
    };
    dst[..m * n]
        .par_chunks_mut((band * m).max(1))
        .enumerate()
        .for_each(|(i, dst)| {
            let cols = i * band..(i * band + band).min(n);
            // SAFETY: `dst` is this band's exclusively borrowed (cols × m, row-major) block,
            // i.e. the (m × cols) product stored column-major.
            unsafe { gemm_raw(dst.as_mut_ptr(), (1, m), lhs, rhs.cols(cols), false) };
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive product in f64.
    fn reference(lhs: Matrix<'_>, rhs: Matrix<'_>) -> Vec<f64> {
        let mut out = vec![0.0; lhs.rows * rhs.cols];
        for i in 0..lhs.rows {
            for j in 0..rhs.cols {
                out[i * rhs.cols + j] = (0..lhs.cols)
                    .map(|p| {
                        f64::from(lhs.data[i * lhs.row_stride + p * lhs.col_stride])
                            * f64::from(rhs.data[p * rhs.row_stride + j * rhs.col_stride])
                    })
                    .sum();
            }
        }
        out
    }

    /// Every split (one thread, row bands, column bands with a ragged last band) and a
    /// transposed right-hand side give the naive product; `accumulate` adds to what `dst`
    /// held. Bound 1e-5 relative: sums of k ≤ 300 products of O(1) terms in f32.
    #[test]
    fn products_match_the_naive_product() {
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0)
                .collect()
        };
        for (m, n, k) in [(3, 5, 7), (40, 1000, 300), (500, 70, 100), (1, 33, 0)] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            let lhs = Matrix::row_major(&a, m, k);
            for rhs in [
                Matrix::row_major(&b, k, n),
                Matrix {
                    data: &b,
                    rows: k,
                    cols: n,
                    row_stride: 1,
                    col_stride: k,
                },
            ] {
                let expected = reference(lhs, rhs);
                let mut transposed = vec![0.5f32; m * n];
                product_transposed_parallel(&mut transposed, lhs, rhs);
                for i in 0..m {
                    for j in 0..n {
                        let (got, want) = (transposed[j * m + i], expected[i * n + j]);
                        assert!(
                            (f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "transposed {m}x{n}x{k}: {got} vs {want}"
                        );
                    }
                }
                // Three terms: lhs · rhs, lhs · rhs again, and lhs · rhs once more.
                let mut sum = vec![0.5f32; m * n];
                sum_of_products_parallel(&mut sum, 3, |_| (lhs, rhs));
                for (got, want) in sum.iter().zip(&expected) {
                    assert!(
                        (f64::from(*got) - 3.0 * want).abs() <= 3e-5 * want.abs().max(1.0),
                        "sum {m}x{n}x{k}: {got} vs {}",
                        3.0 * want
                    );
                }
                for accumulate in [false, true] {
                    let mut dst = vec![0.5f32; m * n];
                    product_parallel(&mut dst, lhs, rhs, accumulate);
                    for (got, want) in dst.iter().zip(&expected) {
                        let want = want + if accumulate { 0.5 } else { 0.0 };
                        assert!(
                            (f64::from(*got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "{m}x{n}x{k}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
