"""The main job as stages (select, base, build, up, test-all, verify), the base image, test-all."""
