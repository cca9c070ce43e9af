"""The application's value types: a simulation config, an option, and a pricing result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OptionKind = Literal["call", "put"]
Backend = Literal["numpy", "torch"]


@dataclass(frozen=True)
class SimulationConfig:
    """Geometric Brownian motion under the risk-neutral measure: dS = r S dt + sigma S dW."""

    spot: float
    rate: float
    volatility: float
    maturity: float
    n_steps: int = 252
    n_paths: int = 100_000
    seed: int = 0
    antithetic: bool = True
    backend: Backend = "numpy"

    def __post_init__(self) -> None:
        if self.spot <= 0:
            raise ValueError(f"spot must be positive, got {self.spot}")
        if self.volatility < 0:
            raise ValueError(f"volatility must be >= 0, got {self.volatility}")
        if self.maturity <= 0:
            raise ValueError(f"maturity must be positive, got {self.maturity}")
        if self.n_steps < 1 or self.n_paths < 2:
            raise ValueError("need n_steps >= 1 and n_paths >= 2")
        if self.antithetic and self.n_paths % 2:
            raise ValueError("antithetic sampling needs an even n_paths")
        if self.backend not in ("numpy", "torch"):
            raise ValueError(f"unknown backend {self.backend!r}")


@dataclass(frozen=True)
class OptionSpec:
    strike: float
    kind: OptionKind = "call"

    def __post_init__(self) -> None:
        if self.strike <= 0:
            raise ValueError(f"strike must be positive, got {self.strike}")
        if self.kind not in ("call", "put"):
            raise ValueError(f"kind must be 'call' or 'put', got {self.kind!r}")


@dataclass(frozen=True)
class PricingResult:
    price: float
    std_error: float
    n_paths: int
    backend: Backend
