"""The library some stages use: IDX and HTTP, the dataset catalog, the image geometry, the Great Expectations suite,
the models' layers, the network's training callbacks, distribution, model files, inference, predictions, the
report's figures and page, sweeps.

dvc.yaml lists, for each stage, exactly the modules here that the stage imports (tests/test_code_deps.py derives
that list from the source and compares).
"""
