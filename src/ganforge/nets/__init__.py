"""Plain ``nn.Module`` generators and discriminators; Hydra builds them via ``_target_``."""

from ganforge.nets.dcgan import DCGANDiscriminator, DCGANGenerator

__all__ = ["DCGANDiscriminator", "DCGANGenerator"]
