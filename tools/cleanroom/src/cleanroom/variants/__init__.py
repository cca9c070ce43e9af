"""The pyproject variants: select one into pyproject.toml, and the drift between them."""
