"""Who is calling: API tokens, passwords and the principal a request acts as."""

from bastion.identity.principal import Principal
from bastion.identity.tokens import hash_token, new_token

__all__ = ["Principal", "hash_token", "new_token"]
