"""What the flows call to run the pipeline as a service: the Prefect server, work pool, deployments and worker
(`serve`), their health (`status`, `server_log`), DVC's record of what changed (`versioning`), the last run
(`runs`) and the flow's Prefect artifacts (`artifacts`). Nothing here is a stage."""
