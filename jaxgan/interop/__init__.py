"""Other frameworks' model files: :mod:`jaxgan.interop.pth` reads and writes ``torch.save``
state_dicts without torch; :mod:`jaxgan.interop.torch` converts the pix2pix / CycleGAN / DCGAN
reference networks' state_dicts to jaxgan variables and back, under the reference's names.
"""

from jaxgan.interop.pth import PthFormatError, read_pth, write_pth

__all__ = ["PthFormatError", "read_pth", "write_pth"]
