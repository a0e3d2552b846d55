"""Pipeline stages: one module per stage, pure functions plus one thin Prefect task."""
