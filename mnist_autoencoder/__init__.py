"""The core of the MNIST autoencoder project: data, models, metrics, reports, the registry.

Plain Python, NumPy, Keras and scikit-learn; it never imports Prefect, so every
piece works from a notebook or a script. The Prefect stages in ``tasks/`` and
the flows in ``flows/`` are thin adapters over these modules. TensorFlow is
imported only by the modules that build or run models (``model``, ``variants``,
``training``, ``inference``), and only when they are imported.
"""
