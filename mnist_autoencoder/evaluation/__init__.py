"""How good a model and its codes are: errors, probes, baselines, analyses, corruptions.

``metrics`` computes per-image errors; ``reconstruction`` the test-set metrics of
one model; ``probes`` the linear probe; ``baselines`` PCA and the raw-pixel probe,
which need no model; ``analysis`` the views of the codes the report shows; and
``corruptions`` the MNIST-C-style corrupted digits that the anomaly score is
measured on.
"""
