"""The control plane: the admin REST API and the operations it shares with the CLI."""
