"""Builds the cleanroom engine (tools/cleanroom) from the repository root, for pre-commit.

pre-commit installs a `language: python` hook with `pip install .` at the root of the hook's
repository. This repository's root pyproject.toml is a generated artifact (never in git), so
pip needs another way to build the root: this file. It builds the same distribution as
tools/cleanroom/pyproject.toml, whose name, dependencies and entry points it reads (written
once, there), with the version from cleanroom/__init__.py (also written once). Anything else
should install tools/cleanroom directly: `python3 -m pip install ./tools/cleanroom`.
"""

import re
import tomllib
from pathlib import Path

from setuptools import find_packages, setup

ENGINE = Path(__file__).resolve().parent / "tools" / "cleanroom"
SRC = "tools/cleanroom/src"
project = tomllib.loads((ENGINE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
init = (ENGINE / "src" / "cleanroom" / "__init__.py").read_text(encoding="utf-8")
version = re.search(r'^__version__ = "([^"]+)"', init, re.M)
if version is None:
    raise SystemExit(f"no __version__ in {ENGINE / 'src' / 'cleanroom' / '__init__.py'}")

setup(
    name=project["name"],
    version=version.group(1),
    description=project["description"],
    license_expression=project["license"],
    python_requires=project["requires-python"],
    install_requires=project["dependencies"],
    package_dir={"": SRC},
    packages=find_packages(SRC),
    package_data={"cleanroom": ["py.typed"]},
    entry_points={"console_scripts": [f"{k} = {v}" for k, v in project["scripts"].items()]},
)
