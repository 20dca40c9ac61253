"""Image synthesis: reading image sets, the UNet diffusion synthesizer."""
