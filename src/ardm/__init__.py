"""ardm: Autoregressive Diffusion Models in PyTorch."""
