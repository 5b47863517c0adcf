"""ganforge: GAN experiments with Hydra configs and PyTorch Lightning."""

__version__ = "0.1.0"
