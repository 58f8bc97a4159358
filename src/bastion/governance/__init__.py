"""Who may do what: permissions, roles, tenants, teams and visibility, decided from snapshots."""
