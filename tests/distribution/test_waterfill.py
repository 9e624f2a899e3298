"""Water-filling kernels: `water_fill_box_near` gives `water_fill_box`'s answer from any start."""

from __future__ import annotations

import numpy as np
import pytest

from distribution._waterfill import water_fill_box, water_fill_box_near


@pytest.mark.parametrize("seed", range(40))
def test_box_near_matches_the_sorting_kernel_from_any_start(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    w = rng.uniform(1e-3, 1.0, n) * 10.0 ** rng.integers(-3, 4)
    a = rng.uniform(-200e3, 100e3, n) * (rng.random(n) < 0.8)
    b = a + rng.uniform(0.0, 200e3, n) * (rng.random(n) < 0.9)  # some boxes are a point
    lo, hi = float(a.sum()), float(b.sum())
    scale = float(np.abs(a).sum() + np.abs(b).sum())
    for target in (lo, hi, float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))):
        want = water_fill_box(w, a, b, target)
        keys = np.concatenate((a / w, b / w))
        starts = (0.0, float(np.median(keys)), float(keys.max()) * 10.0 + 1.0, -1e12)
        for lam0 in starts:
            got, total = water_fill_box_near(w, a, b, target, lam0)
            assert np.all((a <= got) & (got <= b))
            assert abs(total - float(got.sum())) <= 1e-12 * max(1.0, scale)
            assert np.abs(got - want).max() <= 1e-9 * max(1.0, scale), (target, lam0)
