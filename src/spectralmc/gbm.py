"""Seeded, vectorised geometric Brownian motion paths (numpy)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .model import SimulationConfig

FloatArray = npt.NDArray[np.float64]


def _normals(cfg: SimulationConfig, n_steps: int) -> FloatArray:
    rng = np.random.default_rng(cfg.seed)
    if cfg.antithetic:
        half = rng.standard_normal((cfg.n_paths // 2, n_steps))
        return np.concatenate([half, -half], axis=0)
    return rng.standard_normal((cfg.n_paths, n_steps))


def simulate_paths(cfg: SimulationConfig) -> FloatArray:
    """Paths of shape (n_paths, n_steps + 1), column 0 the spot; exact log-Euler scheme."""
    dt = cfg.maturity / cfg.n_steps
    z = _normals(cfg, cfg.n_steps)
    drift = (cfg.rate - 0.5 * cfg.volatility**2) * dt
    log_increments = drift + cfg.volatility * np.sqrt(dt) * z
    log_paths = np.cumsum(log_increments, axis=1)
    paths = np.empty((cfg.n_paths, cfg.n_steps + 1))
    paths[:, 0] = cfg.spot
    paths[:, 1:] = cfg.spot * np.exp(log_paths)
    return paths


def terminal_values(cfg: SimulationConfig) -> FloatArray:
    """S(T) only, drawn in one step: what European payoffs need (same law as the paths' end)."""
    z = _normals(cfg, 1)[:, 0]
    t = cfg.maturity
    return np.asarray(
        cfg.spot * np.exp((cfg.rate - 0.5 * cfg.volatility**2) * t + cfg.volatility * np.sqrt(t) * z),
        dtype=np.float64,
    )
