import numpy as np
import pytest

from fedsyn import fixedpoint as fp
from fedsyn.errors import InputError


def test_round_trip_within_half_ulp():
    x = np.array([0.0, 1.5, -2.25, 13.37, -1e-6, 1000.123456])
    enc = fp.encode(x, 16)
    assert enc.dtype == np.int64
    assert np.all(np.abs(fp.decode(enc, 16) - x) <= 2.0**-17)


def test_ring_views_are_twos_complement():
    enc = np.array([-1, 0, 5], dtype=np.int64)
    ring = fp.to_ring(enc)
    assert ring[0] == np.uint64(2**64 - 1)
    assert np.array_equal(fp.from_ring(ring), enc)
    assert np.allclose(fp.decode(ring, 0), [-1.0, 0.0, 5.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected(bad):
    with pytest.raises(InputError, match="NaN or infinite"):
        fp.encode([1.0, bad], what="gene TP53")


def test_out_of_range_rejected_with_hint():
    with pytest.raises(InputError, match="fixed-point range"):
        fp.encode([2.0**30], 16)
