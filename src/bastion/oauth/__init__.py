"""OAuth 2.1 for MCP clients: one module per standard, no storage or web framework.

Storage is a `typing.Protocol` (`bastion.oauth.provider`) implemented in
`bastion.store.repos.oauth`; HTTP wiring lives in `bastion.web`.
"""
