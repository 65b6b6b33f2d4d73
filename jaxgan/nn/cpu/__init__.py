"""The CPU formulations of convolutions and the rules that pick them, behind one boundary.

XLA:CPU's own convolutions are slow in places (above all the kernel gradient of a transposed,
lhs-dilated convolution), so on CPU ``impl="auto"`` computes the same convolution another
way, chosen per layer shape by :mod:`jaxgan.nn.cpu.rules`:

* :mod:`jaxgan.nn.cpu.formulations`: im2col (patches @ kernel), col2im (matmul, then the tap
  outputs overlap-added), the lean im2col conv for large patch matrices, space-to-depth for
  strided convs, strided Winograd, and the sub-pixel and overlap-add transposed convs.
* :mod:`jaxgan.nn.cpu.winograd`: Winograd's minimal filtering F(m x m, r x r) and its
  derivatives of every order.

Only :mod:`jaxgan.nn.conv` calls into this package; elsewhere a formulation is just an
``impl`` string. On GPU and TPU ``impl="auto"`` never reaches it.
"""
