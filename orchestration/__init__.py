"""Prefect operations: the server, work pool, deployments and worker (`serve`), their health (`status`,
`server_log`), the automations, `make ingest`'s inbox and trigger (`inbox`), the last run (`runs`) and the flow's
Prefect artifacts (`artifacts`). What versions data and models (git, DVC, the registry) is in `versioning/`.
Nothing here is a stage."""
