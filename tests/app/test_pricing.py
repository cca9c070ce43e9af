"""The sample application against the Black-Scholes closed form."""

from __future__ import annotations

import numpy as np
import pytest

from spectralmc import (
    OptionSpec,
    SimulationConfig,
    black_scholes_price,
    price_european,
    simulate_paths,
)
from spectralmc.backend import torch_cuda_available, why_no_torch

CASES = [
    (100.0, 100.0, 0.05, 0.2, 1.0, "call"),
    (100.0, 110.0, 0.01, 0.3, 0.5, "call"),
    (100.0, 90.0, 0.03, 0.25, 2.0, "put"),
    (50.0, 55.0, 0.0, 0.4, 1.5, "put"),
]


@pytest.mark.parametrize(("spot", "strike", "rate", "vol", "t", "kind"), CASES)
def test_monte_carlo_within_three_standard_errors(spot, strike, rate, vol, t, kind):
    cfg = SimulationConfig(spot=spot, rate=rate, volatility=vol, maturity=t, n_paths=200_000, seed=7)
    opt = OptionSpec(strike=strike, kind=kind)
    res = price_european(cfg, opt)
    exact = black_scholes_price(cfg, opt)
    assert res.std_error > 0
    assert abs(res.price - exact) < 3 * res.std_error, (res, exact)


def test_black_scholes_known_value_and_parity():
    cfg = SimulationConfig(spot=100, rate=0.05, volatility=0.2, maturity=1.0)
    call = black_scholes_price(cfg, OptionSpec(100, "call"))
    put = black_scholes_price(cfg, OptionSpec(100, "put"))
    assert call == pytest.approx(10.450583572185565, rel=1e-12)
    assert call - put == pytest.approx(100 - 100 * np.exp(-0.05), rel=1e-12)


def test_paths_are_seeded_and_shaped():
    cfg = SimulationConfig(spot=100, rate=0.02, volatility=0.3, maturity=1.0, n_steps=12, n_paths=1000, seed=3)
    a, b = simulate_paths(cfg), simulate_paths(cfg)
    assert a.shape == (1000, 13)
    assert np.array_equal(a, b)
    assert np.all(a[:, 0] == 100)
    assert not np.array_equal(a, simulate_paths(SimulationConfig(**{**cfg.__dict__, "seed": 4})))


def test_path_mean_matches_forward():
    cfg = SimulationConfig(spot=100, rate=0.03, volatility=0.2, maturity=2.0, n_steps=50, n_paths=100_000, seed=11)
    end = simulate_paths(cfg)[:, -1]
    se = end.std(ddof=1) / np.sqrt(end.size)
    assert abs(end.mean() - 100 * np.exp(0.03 * 2.0)) < 4 * se


@pytest.mark.parametrize(
    "kwargs",
    [dict(spot=-1), dict(volatility=-0.1), dict(maturity=0), dict(n_paths=3), dict(backend="jax")],
)
def test_bad_config_rejected(kwargs):
    base = dict(spot=100, rate=0.0, volatility=0.2, maturity=1.0, n_paths=10)
    with pytest.raises(ValueError):
        SimulationConfig(**{**base, **kwargs})


def test_torch_backend_refused_without_cuda():
    if torch_cuda_available():
        pytest.skip("a CUDA device is present: the refusal path does not apply")
    cfg = SimulationConfig(spot=100, rate=0.0, volatility=0.2, maturity=1.0, n_paths=10, backend="torch")
    with pytest.raises(RuntimeError, match="torch"):
        price_european(cfg, OptionSpec(100))


@pytest.mark.gpu
@pytest.mark.skipif(not torch_cuda_available(), reason=why_no_torch())
def test_torch_backend_matches_black_scholes():
    cfg = SimulationConfig(spot=100, rate=0.05, volatility=0.2, maturity=1.0, n_paths=1_000_000, seed=5, backend="torch")
    opt = OptionSpec(100, "call")
    res = price_european(cfg, opt)
    assert res.backend == "torch"
    assert abs(res.price - black_scholes_price(cfg, opt)) < 3 * res.std_error
