"""Monte Carlo European option pricing, checked against the Black-Scholes closed form."""

from __future__ import annotations

import math

import numpy as np

from .backend import price_torch, torch_cuda_available, why_no_torch
from .gbm import terminal_values
from .model import OptionSpec, PricingResult, SimulationConfig


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_scholes_price(cfg: SimulationConfig, option: OptionSpec) -> float:
    """The closed-form Black-Scholes price of a European call or put."""
    s, k, r, v, t = cfg.spot, option.strike, cfg.rate, cfg.volatility, cfg.maturity
    if v == 0:
        fwd = s - k * math.exp(-r * t)
        return max(fwd, 0.0) if option.kind == "call" else max(-fwd, 0.0)
    d1 = (math.log(s / k) + (r + 0.5 * v * v) * t) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    if option.kind == "call":
        return s * _norm_cdf(d1) - k * math.exp(-r * t) * _norm_cdf(d2)
    return k * math.exp(-r * t) * _norm_cdf(-d2) - s * _norm_cdf(-d1)


def price_european(cfg: SimulationConfig, option: OptionSpec) -> PricingResult:
    """Monte Carlo price with its standard error (antithetic pairs averaged when enabled)."""
    if cfg.backend == "torch":
        if not torch_cuda_available():
            raise RuntimeError(f"backend 'torch' requested but {why_no_torch()}")
        price, se = price_torch(cfg, option)
        return PricingResult(price, se, cfg.n_paths, "torch")
    st = terminal_values(cfg)
    payoff = np.maximum(st - option.strike, 0.0) if option.kind == "call" else np.maximum(option.strike - st, 0.0)
    disc = math.exp(-cfg.rate * cfg.maturity) * payoff
    samples = 0.5 * (disc[: cfg.n_paths // 2] + disc[cfg.n_paths // 2 :]) if cfg.antithetic else disc
    se = float(samples.std(ddof=1) / math.sqrt(samples.size))
    return PricingResult(float(samples.mean()), se, cfg.n_paths, "numpy")
