"""The models: the seed autoencoder and its variants, how they are trained and applied.

``model`` builds the seed and its fast XLA training loop, ``variants`` the sweep's
other autoencoders, ``training`` trains any of them with checkpoints, ``inference``
applies a saved model in chunks, and ``trial`` runs one sweep trial. These are the
modules that import TensorFlow, each only when it is imported itself.
"""
