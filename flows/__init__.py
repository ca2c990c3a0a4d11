"""Prefect flows: wiring only. Each task calls the same function in tasks/ that the DVC stage runs."""

import os

# No telemetry leaves the machine from the tools the flows drive, however they are started (the Makefile
# exports the same settings); without these, a flow started with `python -m flows.training` may also log
# Prefect's telemetry heartbeat failing against its temporary server's database.
for _name, _value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("DVC_NO_ANALYTICS", "1"),
                      ("GX_ANALYTICS_ENABLED", "false")):
    os.environ.setdefault(_name, _value)
