"""Tabular diffusion: encoders, denoiser, Gaussian + multinomial diffusion, the synthesizer."""
