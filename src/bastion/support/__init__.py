"""The support bundle: what an operator sends when asking for help, with every secret redacted.

`settings_view` shows the settings, `health` checks the store, Redis and the vault from the
outside (read-only: a bundle must not change what it reports), and `bundle` gathers them with
versions and recent log lines into one archive; `bastion support bundle` runs it.
"""

__all__: list[str] = []
