"""`make bench`: direct-to-origin vs through-Bastion `tools/call`, each server in its own process.

Modules: `run` (orchestration and the entry point), `stack` (starting and provisioning the
processes under test), `load` (the load generator, run as a separate process), `report`
(table, ratios, targets, JSON). See README.md.
"""
