"""Docker as the engine sees it: the engine probe, builds and compose files, Dockerfiles, the build context."""
