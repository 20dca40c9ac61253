"""Prefect flows: each reads as the user's story and only orchestrates `synth.pipeline`."""
