"""Similarities of unit vectors as 8-bit integer products: twice the speed of float32 BLAS.

The inverted-file search (:mod:`facelab.core.knn`) spends nearly all its time in matrix
products of faces with the members of the cells they probe, and it only needs to know which
of them are nearest. Both sides quantised to 8 bits with one scale (``round((v - mean) *
scale)``, the scale set by the largest component, so nothing is clipped) and multiplied by
onnxruntime's ``MatMulInteger`` (MLAS's u8 x s8 kernels, exact int32 sums), a 1 100 x 512 by
512 x 274 product took 1.9 ms against 3.8 ms in float32 (OpenBLAS, one thread, this
machine's AMD EPYC); a 2 048-square one 1.6 times less.

The error: each component moves by at most half a step, ``1 / (2 scale)``. For 512-d unit
vectors (largest component ~0.3, a step ~0.0024) a similarity moves by ~0.001 (the sum of
512 small independent errors), against the 0.05-0.5 that separate neighbours a clustering
tells apart. Vectors are quantised around their mean: dlib's all lie near one direction,
and measured from it their steps are 2-3 times finer (on lfw-dev's dlib faces the recall of
close neighbours went from 0.977 to 0.989 against float32's 0.992). The caller adds back
what the mean contributes (:func:`facelab.core.knn._offer_lists`).
:meth:`Int8Products.similarity` turns integer sums back into similarities.
"""

from __future__ import annotations

import numba
import numpy as np

from facelab.errors import ConfigError

__all__ = ["Int8Products"]

#: The zero point of the unsigned left side: MatMulInteger multiplies ``(a - 128) * b``.
_ZERO = 128


class Int8Products:
    """Integer products of quantised rows, in any thread (one onnxruntime session, its
    ``run`` thread-safe, one intra-op thread each: the caller runs threads side by side)."""

    def __init__(self) -> None:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        left = helper.make_tensor_value_info("A", TensorProto.UINT8, [None, None])
        right = helper.make_tensor_value_info("B", TensorProto.INT8, [None, None])
        out = helper.make_tensor_value_info("Y", TensorProto.INT32, [None, None])
        zero = helper.make_tensor("zero", TensorProto.UINT8, [], [_ZERO])
        graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B", "zero"], ["Y"])],
                                  "int8_products", [left, right], [out], initializer=[zero])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8  # what onnxruntime 1.18 and later read
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model.SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])

    @staticmethod
    def scale(x: np.ndarray, mean: np.ndarray | None = None) -> float:
        """The scale that maps the largest component of ``x - mean`` to 127 (no float copy
        of ``x``: ``abs(x).max()`` copied 600 MB at 300 000 faces)."""
        if x.size == 0:
            return 1.0
        x, m = _rows(x, mean)
        top = float(_largest(x, m))
        return 127.0 / top if top > 0 else 1.0

    @staticmethod
    def quantize(x: np.ndarray, scale: float, mean: np.ndarray | None = None) -> np.ndarray:
        """Rows ``(x - mean) * scale`` rounded (within -127..127 for the scale of
        :meth:`scale`), offset by 128 into uint8: the left side of a product as they are,
        the right side through :meth:`right`. One compiled pass, no float temporary."""
        rows, m = _rows(x, mean)
        out = np.empty(rows.shape, np.uint8)
        _quantize(rows, m, np.float32(scale), out)
        return out.reshape(np.shape(x))

    @staticmethod
    def right(rows: np.ndarray) -> np.ndarray:
        """Quantised rows as the right side, signed (the bits of ``v - 128`` are those of
        ``v`` with the top one flipped); transpose them for :meth:`product`."""
        return (rows ^ np.uint8(_ZERO)).view(np.int8)

    def product(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(a - 128) @ b`` exactly, int32: ``a`` (m, d) quantised rows, ``b`` (d, n) from
        :meth:`right`, transposed."""
        if a.dtype != np.uint8 or b.dtype != np.int8 or a.shape[1] != b.shape[0]:
            raise ConfigError(f"int8 product of {a.dtype}{a.shape} and {b.dtype}{b.shape}: "
                              "expected uint8 (m, d) and int8 (d, n)")
        return self._session.run(None, {"A": a, "B": b})[0]

    @staticmethod
    def similarity(sums: np.ndarray, left_scale: float, right_scale: float) -> np.ndarray:
        """Integer sums back to similarities (float32)."""
        return (np.asarray(sums, np.float32) / np.float32(left_scale * right_scale))


def _rows(x: np.ndarray, mean: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as contiguous float32 rows (a view when it already is) and the mean (zeros
    for None) the compiled passes take."""
    x = np.ascontiguousarray(x, np.float32)
    d = x.shape[-1]
    m = np.zeros(d, np.float32) if mean is None else np.asarray(mean, np.float32)
    return x.reshape(-1, d), m


@numba.njit(cache=True, nogil=True)
def _largest(x: np.ndarray, mean: np.ndarray) -> float:  # pragma: no cover - compiled
    top = 0.0
    for r in range(x.shape[0]):
        for j in range(x.shape[1]):
            v = abs(x[r, j] - mean[j])
            if v > top:
                top = v
    return top


@numba.njit(cache=True, nogil=True)
def _quantize(x: np.ndarray, mean: np.ndarray, scale: np.float32, out: np.ndarray
              ) -> None:  # pragma: no cover - compiled
    for r in range(x.shape[0]):
        for j in range(x.shape[1]):  # to the nearest, halves away from zero; + 128
            v = (x[r, j] - mean[j]) * scale
            out[r, j] = np.uint8(np.int32(v + np.float32(0.5)) + 128) if v >= 0 else \
                np.uint8(np.int32(v - np.float32(0.5)) + 128)
