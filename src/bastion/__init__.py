"""Bastion: a security gateway for the Model Context Protocol.

Published virtual servers compose tools, resources and prompts from upstream
origin servers; every request is authenticated, authorized and audited.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
