"""Plain ``nn.Module`` generators and discriminators; Hydra builds them via ``_target_``."""

from ganforge.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from ganforge.nets.joint import JointDiscriminator
from ganforge.nets.mlp import MLPDiscriminator, MLPGenerator
from ganforge.nets.progan import ProGANDiscriminator, ProGANGenerator
from ganforge.nets.sagan import SAGANDiscriminator, SAGANGenerator
from ganforge.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "JointDiscriminator",
    "MLPDiscriminator",
    "MLPGenerator",
    "ProGANDiscriminator",
    "ProGANGenerator",
    "SAGANDiscriminator",
    "SAGANGenerator",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
]
