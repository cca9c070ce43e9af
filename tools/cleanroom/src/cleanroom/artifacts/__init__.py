"""The artifact policy and what follows from it: the repo scan, ignore-file fixes, clean."""
