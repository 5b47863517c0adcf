"""Plain ``nn.Module`` generators and discriminators; Hydra builds them via ``_target_``."""

from ganforge.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from ganforge.nets.flow import FlowGenerator
from ganforge.nets.joint import JointDiscriminator
from ganforge.nets.mlp import MLPDiscriminator, MLPGenerator
from ganforge.nets.progan import ProGANDiscriminator, ProGANGenerator
from ganforge.nets.pyramid import LevelDiscriminator, LevelGenerator, PyramidDiscriminator, PyramidGenerator
from ganforge.nets.sagan import SAGANDiscriminator, SAGANGenerator
from ganforge.nets.stylegan import StyleGANGenerator
from ganforge.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from ganforge.nets.stylegan3 import StyleGAN3Generator
from ganforge.nets.transgan import TransGANDiscriminator, TransGANGenerator
from ganforge.nets.translation import PatchDiscriminator, ResnetGenerator, SRResNetGenerator, UNetGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "FlowGenerator",
    "JointDiscriminator",
    "LevelDiscriminator",
    "LevelGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "PatchDiscriminator",
    "ProGANDiscriminator",
    "ProGANGenerator",
    "PyramidDiscriminator",
    "PyramidGenerator",
    "ResnetGenerator",
    "SAGANDiscriminator",
    "SAGANGenerator",
    "SRResNetGenerator",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "StyleGAN3Generator",
    "StyleGANGenerator",
    "TransGANDiscriminator",
    "TransGANGenerator",
    "UNetGenerator",
]
