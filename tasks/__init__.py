"""Pipeline stages. Each module holds one stage as a pure function over paths and typed params.

The same functions run under `dvc repro` (`python -m tasks.<stage> <dataset>`) and under the
Prefect flow in `flows/training.py`.
"""

# The pipeline's stages in order: module names in tasks/, stage names in dvc.yaml, Prefect task names.
STAGES = ("download", "validate", "normalize", "train", "evaluate", "promote", "report")
