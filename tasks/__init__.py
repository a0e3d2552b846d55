"""The Prefect layer: a task per stage over the core, the look-ups, shared I/O and caching."""
