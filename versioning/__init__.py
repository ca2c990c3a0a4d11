"""Versioning: git and DVC as the record of every run. DVC's view of what changed (`dvc_state`), the commit a run
makes and its push (`commits`, `remote`), the model registry's tags (`registry`), `make history` and `make
rollback`, the DVC remote's shared inbox (`shared_inbox`) and the sweep's DVC experiments (`experiments`). It
imports nothing of Prefect's operations (`orchestration/`), which import it. Nothing here is a stage."""
