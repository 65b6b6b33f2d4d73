"""Entry points: ``python -m jaxgan.experiments.{dcgan,pix2pix,cyclegan,pggan}``.

Each module has ``train_and_evaluate(config, workdir)`` (importable) and a thin ``main``; the
shared loop is :mod:`jaxgan.experiments.runner`.
"""
