"""Protobuf: generation of the package, the rewrite of imports, the migration of checked-in code."""
