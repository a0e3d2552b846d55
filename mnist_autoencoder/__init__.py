"""The core of the MNIST autoencoder project: data, models, metrics, reports, the registry.

Plain Python, NumPy, Keras and scikit-learn; it never imports Prefect, so every
piece works from a notebook or a script. The Prefect stages in ``tasks/`` and
the flows in ``flows/`` are thin adapters over these modules. TensorFlow is
imported only by the modules that build or run models (``model``, ``variants``,
``training``, ``inference``), and only when they are imported.
"""

__all__ = ["load_champion"]


def __getattr__(name: str):
    # Lazy, so that ``import mnist_autoencoder.data.splits`` does not load Keras and pandas.
    if name == "load_champion":
        from mnist_autoencoder.scoring.champion import load_champion

        return load_champion
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
