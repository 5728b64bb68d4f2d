"""What a read gives for data stored with the unsigned conventions (BZERO
or TZERO 2^15, 2^31, 2^63 with scale 1) on the running torch, so that one
test asserts the right dtype and values on every torch line.

torch 2.3 and later: torch.uint16, uint32 and uint64, exact. Older torch
(Debian's 1.13) has no unsigned dtype wider than uint8; the shim then
gives int32 and int64 (exact) and float64 for uint64 (the value rounded to
double once, as cfitsio gives it: exact up to 2^53).
"""
import numpy as np
import torch

HAS_UNSIGNED = all(hasattr(torch, n) for n in ("uint16", "uint32", "uint64"))

FALLBACK = {16: torch.int32, 32: torch.int64, 64: torch.float64}
_FALLBACK_NP = {16: np.int32, 32: np.int64, 64: np.float64}
_UNSIGNED_NP = {16: np.uint16, 32: np.uint32, 64: np.uint64}
_SIGNED = {16: (torch.int16, np.int16), 32: (torch.int32, np.int32), 64: (torch.int64, np.int64)}


def unsigned_dtype(bits):
    """The dtype a read gives for unsigned data of `bits` (16, 32, 64) bits."""
    if HAS_UNSIGNED:
        return {16: torch.uint16, 32: torch.uint32, 64: torch.uint64}[bits]
    return FALLBACK[bits]


def as_numpy(t):
    """The values of a CPU tensor as a numpy array, exactly: unsigned
    tensors are viewed through the signed type of their size (numpy()
    does not take them on every torch that has them)."""
    if HAS_UNSIGNED:
        for bits, dtype in ((16, torch.uint16), (32, torch.uint32), (64, torch.uint64)):
            if t.dtype == dtype:
                return t.contiguous().view(_SIGNED[bits][0]).numpy().view(_UNSIGNED_NP[bits])
    return t.numpy()


def expected(values, bits):
    """What a read of unsigned `values` (astropy's or fitsio's uint array of
    `bits` bits) gives on this torch, as numpy."""
    u = np.asarray(values).astype(_UNSIGNED_NP[bits])
    if HAS_UNSIGNED:
        return u
    return u.astype(_FALLBACK_NP[bits])  # uint64 to float64: rounded once


def assert_unsigned(t, values, bits):
    """`t` has this torch's dtype for unsigned data and the values of
    `values`, element for element, in the same shape."""
    assert t.dtype == unsigned_dtype(bits), (t.dtype, bits)
    want = expected(values, bits)
    assert tuple(t.shape) == want.shape
    got = as_numpy(t)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
