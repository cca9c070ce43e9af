"""Optional torch backend: used only when torch is installed and a CUDA device is available."""

from __future__ import annotations

import importlib.util
import math

from .model import OptionSpec, SimulationConfig


def torch_cuda_available() -> bool:
    """True when torch imports and sees a CUDA device; never raises."""
    if importlib.util.find_spec("torch") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install must not break the CPU path
        return False


def why_no_torch() -> str:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (the optional 'gpu' dependency group)"
    return "torch is installed but no CUDA device is available"


def price_torch(cfg: SimulationConfig, option: OptionSpec) -> tuple[float, float]:
    """Monte Carlo price and standard error on the GPU, float64 (discounted payoff mean)."""
    import torch

    gen = torch.Generator(device="cuda").manual_seed(cfg.seed)
    n = cfg.n_paths // 2 if cfg.antithetic else cfg.n_paths
    z = torch.randn(n, generator=gen, device="cuda", dtype=torch.float64)
    if cfg.antithetic:
        z = torch.cat([z, -z])
    t = cfg.maturity
    st = cfg.spot * torch.exp((cfg.rate - 0.5 * cfg.volatility**2) * t + cfg.volatility * math.sqrt(t) * z)
    payoff = torch.clamp(st - option.strike if option.kind == "call" else option.strike - st, min=0.0)
    disc = math.exp(-cfg.rate * t) * payoff
    if cfg.antithetic:
        pairs = 0.5 * (disc[: cfg.n_paths // 2] + disc[cfg.n_paths // 2 :])
        return float(pairs.mean()), float(pairs.std(unbiased=True) / math.sqrt(pairs.numel()))
    return float(disc.mean()), float(disc.std(unbiased=True) / math.sqrt(disc.numel()))
