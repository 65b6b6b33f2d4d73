"""Interoperability with other frameworks' model files.

- :mod:`jaxgan.interop.pth`: read and write ``torch.save`` state_dicts without torch.
- :mod:`jaxgan.interop.torch`: the pix2pix / CycleGAN / DCGAN reference networks' PyTorch
  state_dicts to jaxgan variables and back, under the reference's parameter names.
"""

from jaxgan.interop.pth import PthFormatError, read_pth, write_pth

__all__ = ["PthFormatError", "read_pth", "write_pth"]
