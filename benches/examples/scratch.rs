use std::time::Instant;
struct P(*mut f32);
unsafe impl Send for P {}
unsafe impl Sync for P {}
impl P {
    fn at(&self, o: usize) -> *mut f32 {
        unsafe { self.0.add(o) }
    }
}
// current: dst row-major (t x n), x row-major, w (k x n) row-major; split columns in 2
fn current(t: usize, k: usize, n: usize, dst: &mut [f32], x: &[f32], w: &[f32]) {
    let half = (n / 2).next_multiple_of(16).min(n);
    let p = P(dst.as_mut_ptr());
    let job = |c0: usize, c1: usize| unsafe {
        gemm::gemm(
            t,
            c1 - c0,
            k,
            p.at(c0),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr().add(c0),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    };
    std::thread::scope(|s| {
        s.spawn(|| job(half, n));
        job(0, half);
    });
}
// new: D (t x n) col-major (= out^T row-major n x t), x row-major, w_pt (n x k) row-major used as col-major (k x n)
fn new(t: usize, k: usize, n: usize, dst: &mut [f32], x: &[f32], wpt: &[f32]) {
    let half = (n / 2).max(1);
    let p = P(dst.as_mut_ptr());
    let job = |c0: usize, c1: usize| unsafe {
        gemm::gemm(
            t,
            c1 - c0,
            k,
            p.at(c0 * t),
            t as isize,
            1,
            false,
            x.as_ptr(),
            1,
            k as isize,
            wpt.as_ptr().add(c0 * k),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    };
    std::thread::scope(|s| {
        s.spawn(|| job(half, n));
        job(0, half);
    });
}
fn main() {
    for (t, k, n) in [
        (154usize, 1280usize, 1280usize),
        (154, 1280, 5120),
        (154, 5120, 1280),
        (2048, 768, 768),
        (257, 1664, 8192),
        (257, 8192, 1664),
        (32, 2048, 8192),
        (6, 2048, 8192),
        (6, 8192, 2048),
    ] {
        let x: Vec<f32> = (0..t * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut wpt = vec![0f32; k * n];
        for a in 0..k {
            for b in 0..n {
                wpt[b * k + a] = w[a * n + b];
            }
        }
        let mut d1 = vec![0f32; t * n];
        let mut d2 = vec![0f32; t * n];
        let reps = if t < 100 { 20 } else { 6 };
        current(t, k, n, &mut d1, &x, &w);
        let s = Instant::now();
        for _ in 0..reps {
            current(t, k, n, &mut d1, &x, &w);
        }
        let a = s.elapsed().as_secs_f64() / reps as f64;
        new(t, k, n, &mut d2, &x, &wpt);
        let s = Instant::now();
        for _ in 0..reps {
            new(t, k, n, &mut d2, &x, &wpt);
        }
        let b = s.elapsed().as_secs_f64() / reps as f64;
        // check
        let mut err = 0f32;
        for i in 0..t {
            for j in 0..n {
                err = err.max((d1[i * n + j] - d2[j * t + i]).abs());
            }
        }
        let f = 2.0 * (t * k * n) as f64 / 1e9;
        println!(
            "{t}x{k}x{n}: current {:.2} ms ({:.0}), W mapped {:.2} ms ({:.0}) err {err}",
            a * 1e3,
            f / a,
            b * 1e3,
            f / b
        );
    }
}
