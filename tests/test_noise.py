"""The rounded Irwin-Hall noise of every release: exact distribution, symmetry, MPC circuit, sampler."""

from __future__ import annotations

import numpy as np
import pytest

from fedsyn.errors import ConfigError
from fedsyn.noise import IRWIN_HALL_TERMS, GridNoise, noise_circuit, noise_pmf, noise_width, sample_noise
from fedsyn.randomness import SystemRandom


def brute_force_pmf(width: int, f: int) -> dict[int, float]:
    """P(Z = k) by exact enumeration of R (12-fold convolution of uniform counts) and Z = round(R' / w)."""
    m = 1 << f
    counts = np.array([1], dtype=object)
    for _ in range(IRWIN_HALL_TERMS):
        counts = np.convolve(counts, np.ones(m, dtype=object))
    centred = np.arange(counts.size) - 6 * (m - 1)
    z = (centred + (width - 1) // 2) // width
    out: dict[int, int] = {}
    for k, c in zip(z.tolist(), counts.tolist()):
        out[k] = out.get(k, 0) + c
    return {k: c / m**IRWIN_HALL_TERMS for k, c in out.items() if c}


@pytest.mark.parametrize("f", [3, 4])
@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.7, 5.0])
def test_pmf_equals_brute_force(f, sigma):
    w = noise_width(sigma, f)
    ks, probs = noise_pmf(w, f)
    want = brute_force_pmf(w, f)
    assert ks.tolist() == sorted(want)
    np.testing.assert_allclose(probs, [want[k] for k in ks.tolist()], rtol=1e-13, atol=0)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 23.43, 81.0])
def test_pmf_is_exactly_symmetric_and_has_the_asked_spread(sigma):
    g = GridNoise(sigma)
    ks, probs = g.pmf()
    assert ks[0] == -ks[-1] and np.all(np.diff(ks) == 1)  # a contiguous integer range
    assert np.array_equal(probs, probs[::-1])
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    # the width is the nearest odd integer to sqrt(M^2 - 1) / sigma; rounding adds about 1/12 to the variance
    assert g.std**2 == pytest.approx(sigma**2 + 1 / 12, rel=0.02, abs=0.02)
    assert ks[-1] <= 6 * sigma + 1


@pytest.mark.parametrize("sigma", [0.6, 1.0, 7.3, 22.2, 180.0, 3000.0])
def test_circuit_divides_exactly_for_every_possible_sum(sigma):
    c = noise_circuit(noise_width(sigma))
    m = 1 << c.frac_bits
    r = np.arange(IRWIN_HALL_TERMS * (m - 1) + 1, dtype=np.int64)  # every value R can take
    assert c.numerator_max < 2**62
    np.testing.assert_array_equal(((r + c.t) * c.a >> c.k) - c.q, (r - 6 * (m - 1) + (c.width - 1) // 2) // c.width)


def test_width_is_odd_and_bad_sigma_is_refused():
    assert noise_width(1.0) % 2 == 1
    assert noise_width(1.0) == pytest.approx(2**20, rel=1e-5)
    for bad in (0.0, -1.0, float("nan"), 1e12):
        with pytest.raises(ConfigError):
            noise_width(bad)
    with pytest.raises(ConfigError, match="odd"):
        noise_pmf(4)


def test_sampler_follows_the_pmf():
    sigma, m = 2.5, 200_000
    g = GridNoise(sigma)
    z = g.sample(m, rng=SystemRandom())
    ks, probs = g.pmf()
    assert z.dtype == np.int64 and z.min() >= ks[0] and z.max() <= ks[-1]
    freq = np.bincount(z - ks[0], minlength=ks.size) / m
    assert np.max(np.abs(freq - probs)) < 5 * np.sqrt(probs.max() / m)
    # a seeded generator reproduces it (experiments only)
    a = sample_noise(10, g.width, rng=np.random.default_rng(1))
    b = sample_noise(10, g.width, rng=np.random.default_rng(1))
    assert np.array_equal(a, b)
