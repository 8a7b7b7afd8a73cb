//! Reading burn-flex tensors in place: a float tensor's f32 elements borrowed from its buffer,
//! without the copy `Tensor::into_data` makes of a shared tensor (a module's parameter always
//! is). Only with this crate's `flex` feature; elsewhere every reader gets `None` and the
//! callers keep burn's own ops.

use burn::tensor::{DType, Tensor};

use crate::matmul::Matrix;

/// A float tensor's elements in host memory, held (not copied) while this lives.
pub(crate) struct HostF32 {
    #[cfg(feature = "flex")]
    tensor: burn::backend::flex::FlexTensor,
}

impl HostF32 {
    /// The elements of `tensor` when it lives on burn-flex in f32, else `None`.
    #[cfg_attr(not(feature = "flex"), allow(unused_variables))]
    pub fn new<const D: usize>(tensor: Tensor<D>) -> Option<Self> {
        if tensor.dtype() != DType::F32 {
            return None;
        }
        #[cfg(feature = "flex")]
        {
            let tensor = tensor.try_into_primitive::<burn::backend::Flex>().ok()?;
            Some(Self { tensor })
        }
        #[cfg(not(feature = "flex"))]
        None
    }

    /// The elements from the tensor's first one on, if it is stored contiguously in row-major
    /// order (its logical size may be shorter than the slice).
    pub fn contiguous(&self) -> Option<&[f32]> {
        #[cfg(feature = "flex")]
        {
            let layout = self.tensor.layout();
            layout
                .is_contiguous()
                .then(|| &self.tensor.storage::<f32>()[layout.start_offset()..])
        }
        #[cfg(not(feature = "flex"))]
        None
    }

    /// The first `len` elements, if the tensor is stored contiguously and holds that many.
    pub fn prefix(&self, len: usize) -> Option<&[f32]> {
        self.contiguous()?.get(..len)
    }

    /// A 2-D tensor as a matrix, whatever its (non-negative) strides.
    pub fn matrix(&self) -> Option<Matrix<'_>> {
        match self.matrices()?.as_slice() {
            [matrix] => Some(*matrix),
            _ => None,
        }
    }

    /// A 2-D tensor as one matrix, a 3-D one as a matrix per index of its first axis, whatever
    /// their (non-negative) strides.
    pub fn matrices(&self) -> Option<Vec<Matrix<'_>>> {
        #[cfg(feature = "flex")]
        {
            let layout = self.tensor.layout();
            let data = &self.tensor.storage::<f32>()[layout.start_offset()..];
            let stride = |s: isize| usize::try_from(s).ok();
            let (count, batch_stride, rows, cols, rs, cs) =
                match (&layout.shape()[..], layout.strides()) {
                    (&[rows, cols], &[rs, cs]) => (1, 0, rows, cols, rs, cs),
                    (&[b, rows, cols], &[bs, rs, cs]) => (b, stride(bs)?, rows, cols, rs, cs),
                    _ => return None,
                };
            let (row_stride, col_stride) = (stride(rs)?, stride(cs)?);
            (0..count)
                .map(|i| {
                    let matrix = Matrix {
                        data: data.get(i.checked_mul(batch_stride)?..)?,
                        rows,
                        cols,
                        row_stride,
                        col_stride,
                    };
                    matrix.is_covered().then_some(matrix)
                })
                .collect()
        }
        #[cfg(not(feature = "flex"))]
        None
    }
}
