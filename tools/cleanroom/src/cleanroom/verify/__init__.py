"""verify: every rule of the doctrine, registered once, run over the repo scan."""
