"""Networks (torch modules): flow estimators, denoisers, restoration priors, deblurring nets.

Every network accepts any image size (padded to its stride, cropped back), keeps its
constructor arguments in ``config`` and loads/saves pnpdeblur checkpoints
(``save``, ``from_checkpoint``, ``pretrained`` where weights ship); the end-to-end
deblurring nets and the denoisers (DnCNN, DRUNet, FFDNet, IRCNN) also read their authors' published
checkpoints (``from_official``).
"""
from .dncnn import DnCNN
from .drunet import DRUNet
from .ffdnet import FFDNet
from .ircnn import IRCNNBank
from .sen import SEN
from .rpgan import ArtifactCritic, ConditionalDiscriminator, RPGANGenerator
from .deepdeblur import DeepDeblur, DeepDeblurDiscriminator
from .deblurnet import DeblurNet
from .dvd import DVD
from .deblurgan import DeblurGANCritic, DeblurGANGenerator
from .flownets import FlowNetS

__all__ = [
    "DnCNN",
    "DRUNet",
    "FFDNet",
    "IRCNNBank",
    "SEN",
    "RPGANGenerator",
    "ConditionalDiscriminator",
    "ArtifactCritic",
    "DeepDeblur",
    "DeepDeblurDiscriminator",
    "DeblurNet",
    "DVD",
    "DeblurGANGenerator",
    "DeblurGANCritic",
    "FlowNetS",
]
