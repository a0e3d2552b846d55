"""Prefect flows: wiring and parameters only; the work lives in ``tasks``."""
