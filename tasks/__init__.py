"""Pipeline stages. Each module here holds one stage as a pure function over paths and typed params; the code
they share is in tasks/common (what every stage runs) and tasks/lib (what some use). The stage list is
tasks/common/paths.py's STAGE_OUTPUTS.

The same functions run under `dvc repro` (`python -m tasks.<stage> <dataset>`) and under the
Prefect flow in `flows/training.py`.
"""
