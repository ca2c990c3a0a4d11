"""What every stage runs: params (config), paths, errors, atomic file I/O, the pipeline lock, the stage command
line and stage timings.

dvc.yaml lists this folder as a dependency of every stage (one entry instead of seven per stage): every stage
imports every module here (tests/test_code_deps.py checks it), so an edit re-runs every stage, as the exact list
would.
"""
