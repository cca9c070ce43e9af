"""Round-trips between the application's value types and their protobuf messages.

The messages come from the generated package ``spectralmc_proto`` (``cleanroom proto``; on the
host ``nox -s tests`` runs ``cleanroom proto --pth`` first, in the image it is in /opt).
"""

from __future__ import annotations

import ast
import math
import pickle
import sys
from pathlib import Path

import pytest

try:
    import spectralmc_proto  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip(
        "spectralmc_proto is not importable: run `cleanroom proto --pth` (nox -s tests does)",
        allow_module_level=True,
    )

from hypothesis import given
from hypothesis import strategies as st
from spectralmc_proto import common_pb2, pricing_pb2, pricing_pb2_grpc, simulation_pb2

from spectralmc import OptionSpec, PricingResult, SimulationConfig, price_european
from spectralmc import serialization as ser

finite = {"allow_nan": False, "allow_infinity": False}


@st.composite
def configs(draw: st.DrawFn) -> SimulationConfig:
    antithetic = draw(st.booleans())
    n_paths = draw(st.integers(1, 2**40)) * 2 if antithetic else draw(st.integers(2, 2**63))
    return SimulationConfig(
        spot=draw(st.floats(min_value=1e-300, max_value=1e300, **finite)),
        rate=draw(st.floats(min_value=-10, max_value=10, **finite)),
        volatility=draw(st.floats(min_value=0, max_value=1e6, **finite)),
        maturity=draw(st.floats(min_value=1e-300, max_value=1e6, **finite)),
        n_steps=draw(st.integers(1, 2**32 - 1)),
        n_paths=n_paths,
        seed=draw(st.integers(0, 2**64 - 1)),
        antithetic=antithetic,
        backend=draw(st.sampled_from(["numpy", "torch"])),
    )


options = st.builds(
    OptionSpec,
    strike=st.floats(min_value=1e-300, max_value=1e300, **finite),
    kind=st.sampled_from(["call", "put"]),
)
results = st.builds(
    PricingResult,
    price=st.floats(**finite),
    std_error=st.floats(min_value=0, **finite),
    n_paths=st.integers(0, 2**64 - 1),
    backend=st.sampled_from(["numpy", "torch"]),
)


@given(configs())
def test_config_round_trips_through_bytes(cfg: SimulationConfig) -> None:
    wire = ser.config_to_proto(cfg).SerializeToString()
    assert ser.config_from_proto(simulation_pb2.SimulationConfig.FromString(wire)) == cfg


@given(options)
def test_option_round_trips_through_bytes(option: OptionSpec) -> None:
    wire = ser.option_to_proto(option).SerializeToString()
    assert ser.option_from_proto(simulation_pb2.OptionSpec.FromString(wire)) == option


@given(results)
def test_result_round_trips_through_bytes(result: PricingResult) -> None:
    wire = ser.result_to_proto(result).SerializeToString()
    assert ser.result_from_proto(pricing_pb2.PricingResult.FromString(wire)) == result


@given(configs(), options)
def test_request_round_trips(cfg: SimulationConfig, option: OptionSpec) -> None:
    wire = ser.request_to_proto(cfg, option).SerializeToString()
    assert ser.request_from_proto(pricing_pb2.PriceRequest.FromString(wire)) == (cfg, option)


def test_fields_and_enums_are_what_the_schema_says() -> None:
    cfg = SimulationConfig(spot=100, rate=0.05, volatility=0.2, maturity=1.0, n_paths=1000, seed=7)
    msg = ser.config_to_proto(cfg)
    assert (msg.spot, msg.n_paths, msg.seed, msg.antithetic) == (100.0, 1000, 7, True)
    assert msg.backend == common_pb2.BACKEND_NUMPY
    assert ser.option_to_proto(OptionSpec(90.0, "put")).kind == common_pb2.OPTION_KIND_PUT


def test_unspecified_enums_take_the_model_defaults_or_fail() -> None:
    msg = simulation_pb2.SimulationConfig(spot=1, volatility=0.1, maturity=1, n_steps=1, n_paths=2)
    assert ser.config_from_proto(msg).backend == "numpy"
    assert ser.option_from_proto(simulation_pb2.OptionSpec(strike=1.0)).kind == "call"
    with pytest.raises(ValueError, match="backend"):
        ser.result_from_proto(pricing_pb2.PricingResult(price=1.0))


def test_invalid_messages_raise_value_error() -> None:
    with pytest.raises(ValueError, match="spot"):
        ser.config_from_proto(simulation_pb2.SimulationConfig())  # all zero
    with pytest.raises(ValueError, match="strike"):
        ser.option_from_proto(simulation_pb2.OptionSpec(kind=common_pb2.OPTION_KIND_CALL))
    with pytest.raises(ValueError, match="both"):
        ser.request_from_proto(pricing_pb2.PriceRequest())


def test_a_priced_result_round_trips() -> None:
    cfg = SimulationConfig(spot=100, rate=0.01, volatility=0.3, maturity=0.5, n_paths=2000)
    result = price_european(cfg, OptionSpec(105.0))
    back = ser.result_from_proto(pricing_pb2.PricingResult.FromString(
        ser.result_to_proto(result).SerializeToString()))
    assert back == result and math.isfinite(back.price)


def test_generated_modules_have_one_identity() -> None:
    assert simulation_pb2.__name__ == "spectralmc_proto.simulation_pb2"
    assert type(simulation_pb2.OptionSpec()).__module__ == "spectralmc_proto.simulation_pb2"
    assert not [m for m in sys.modules if m.endswith("_pb2") and "." not in m]
    msg = ser.request_to_proto(SimulationConfig(1.0, 0.0, 0.1, 1.0, n_paths=4), OptionSpec(1.0))
    assert pickle.loads(pickle.dumps(msg)) == msg


def test_grpc_service_is_generated() -> None:
    assert hasattr(pricing_pb2_grpc, "PricerStub") and hasattr(pricing_pb2_grpc, "PricerServicer")
    service = pricing_pb2.DESCRIPTOR.services_by_name["Pricer"]
    assert service.methods_by_name["Price"].input_type.name == "PriceRequest"


def test_serialization_imports_only_the_generated_package() -> None:
    import spectralmc.serialization as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    assert "spectralmc_proto" in roots
    assert not roots & {"google", "grpc", "grpc_tools"}
    assert not [r for r in roots if r.endswith("_pb2")]
