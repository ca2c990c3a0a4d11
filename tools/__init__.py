"""Commands beside the pipeline: `predict` (classify image files with the production model), `outputs` (where a
run's outputs are, after `make run`) and `lock_audit` (how the lock's versions compare with each package's)."""
