"""The base layer: errors, config, settings, the workspace, actions and the one runner, reports, git."""
