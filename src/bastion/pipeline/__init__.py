"""The policy pipeline around every forwarded call (tools/call, resources/read, prompts/get).

Stages are small classes with one interface (`bastion.pipeline.base.Stage`); `chain.py` holds
their order and its invariants; `config.py` merges their settings from the most general scope
to the most specific. Decided from the snapshot: no module here imports the store.
"""
