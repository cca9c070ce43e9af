"""SpectralMC sample: seeded GBM path simulation and Monte Carlo European option pricing."""

from .gbm import simulate_paths, terminal_values
from .model import OptionSpec, PricingResult, SimulationConfig
from .pricing import black_scholes_price, price_european

__all__ = [
    "OptionSpec",
    "PricingResult",
    "SimulationConfig",
    "black_scholes_price",
    "price_european",
    "simulate_paths",
    "terminal_values",
]
