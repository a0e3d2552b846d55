"""Operating the pipeline: a local Prefect server and worker."""
