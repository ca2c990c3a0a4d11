"""Prefect flows: wiring only. Each task calls the same function in tasks/ that the DVC stage runs."""
