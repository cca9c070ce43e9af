"""Convert the application's value types to and from their protobuf messages (proto/*.proto).

The messages come from the generated package ``spectralmc_proto`` only (made by
``cleanroom proto``: ``/opt/spectralmc_proto`` in the container, on the path through a ``.pth``),
never from generated code checked into this tree. Conversions are exact (doubles and integers
travel unchanged); a message that does not describe a valid value raises ``ValueError`` (the
model's own validation, or an unspecified enum where there is no default).
"""

from __future__ import annotations

from spectralmc_proto import common_pb2, pricing_pb2, simulation_pb2

from .model import Backend, OptionKind, OptionSpec, PricingResult, SimulationConfig

_BACKEND_TO_PROTO: dict[str, common_pb2.Backend] = {
    "numpy": common_pb2.BACKEND_NUMPY,
    "torch": common_pb2.BACKEND_TORCH,
}
_BACKEND_FROM_PROTO: dict[int, Backend] = {
    common_pb2.BACKEND_NUMPY: "numpy",
    common_pb2.BACKEND_TORCH: "torch",
}
_KIND_TO_PROTO: dict[str, common_pb2.OptionKind] = {
    "call": common_pb2.OPTION_KIND_CALL,
    "put": common_pb2.OPTION_KIND_PUT,
}
_KIND_FROM_PROTO: dict[int, OptionKind] = {
    common_pb2.OPTION_KIND_CALL: "call",
    common_pb2.OPTION_KIND_PUT: "put",
}


def _backend(value: int, default: Backend | None) -> Backend:
    if value == common_pb2.BACKEND_UNSPECIFIED and default is not None:
        return default
    try:
        return _BACKEND_FROM_PROTO[value]
    except KeyError:
        raise ValueError(f"backend: unknown or unspecified enum value {value}") from None


# ------------------------------------------------------------------------- SimulationConfig


def config_to_proto(cfg: SimulationConfig) -> simulation_pb2.SimulationConfig:
    return simulation_pb2.SimulationConfig(
        spot=cfg.spot,
        rate=cfg.rate,
        volatility=cfg.volatility,
        maturity=cfg.maturity,
        n_steps=cfg.n_steps,
        n_paths=cfg.n_paths,
        seed=cfg.seed,
        antithetic=cfg.antithetic,
        backend=_BACKEND_TO_PROTO[cfg.backend],
    )


def config_from_proto(msg: simulation_pb2.SimulationConfig) -> SimulationConfig:
    """An unspecified backend is the model's default (numpy)."""
    return SimulationConfig(
        spot=msg.spot,
        rate=msg.rate,
        volatility=msg.volatility,
        maturity=msg.maturity,
        n_steps=msg.n_steps,
        n_paths=msg.n_paths,
        seed=msg.seed,
        antithetic=msg.antithetic,
        backend=_backend(msg.backend, default="numpy"),
    )


# ------------------------------------------------------------------------------ OptionSpec


def option_to_proto(option: OptionSpec) -> simulation_pb2.OptionSpec:
    return simulation_pb2.OptionSpec(strike=option.strike, kind=_KIND_TO_PROTO[option.kind])


def option_from_proto(msg: simulation_pb2.OptionSpec) -> OptionSpec:
    """An unspecified kind is the model's default (call)."""
    if msg.kind == common_pb2.OPTION_KIND_UNSPECIFIED:
        return OptionSpec(strike=msg.strike)
    try:
        kind = _KIND_FROM_PROTO[msg.kind]
    except KeyError:
        raise ValueError(f"kind: unknown enum value {msg.kind}") from None
    return OptionSpec(strike=msg.strike, kind=kind)


# --------------------------------------------------------------------------- PricingResult


def result_to_proto(result: PricingResult) -> pricing_pb2.PricingResult:
    return pricing_pb2.PricingResult(
        price=result.price,
        std_error=result.std_error,
        n_paths=result.n_paths,
        backend=_BACKEND_TO_PROTO[result.backend],
    )


def result_from_proto(msg: pricing_pb2.PricingResult) -> PricingResult:
    """The backend that produced a result must be named (no default)."""
    return PricingResult(
        price=msg.price,
        std_error=msg.std_error,
        n_paths=msg.n_paths,
        backend=_backend(msg.backend, default=None),
    )


# ---------------------------------------------------------------------------- PriceRequest


def request_to_proto(cfg: SimulationConfig, option: OptionSpec) -> pricing_pb2.PriceRequest:
    return pricing_pb2.PriceRequest(config=config_to_proto(cfg), option=option_to_proto(option))


def request_from_proto(msg: pricing_pb2.PriceRequest) -> tuple[SimulationConfig, OptionSpec]:
    if not msg.HasField("config") or not msg.HasField("option"):
        raise ValueError("a PriceRequest needs both config and option")
    return config_from_proto(msg.config), option_from_proto(msg.option)
