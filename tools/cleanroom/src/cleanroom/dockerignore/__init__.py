"""The .dockerignore matcher (Docker's and BuildKit's rules), self-contained: it imports nothing else of cleanroom."""
