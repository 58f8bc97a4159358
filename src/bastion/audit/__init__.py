"""The audit trail: hash-chained records of every request and downstream call."""
