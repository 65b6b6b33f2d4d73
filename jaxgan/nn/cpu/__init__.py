"""The CPU formulations of convolutions and the rules that pick them.

XLA:CPU's own convolutions are slow in places (above all the kernel gradient of a transposed,
lhs-dilated convolution), so on CPU ``impl="auto"`` computes the same convolution another way,
chosen per layer shape by :mod:`jaxgan.nn.cpu.rules`: :mod:`jaxgan.nn.cpu.formulations`
(im2col, col2im, the lean conv for large patch matrices, space-to-depth for strided convs,
strided Winograd, sub-pixel and overlap-add transposed convs) and :mod:`jaxgan.nn.cpu.winograd`
(F(m x m, r x r) with derivatives of every order). Only :mod:`jaxgan.nn.conv` calls in here;
on GPU and TPU ``impl="auto"`` never does.
"""
