"""HTTP plumbing shared by every plane: raw ASGI responses, middleware, the error table."""
