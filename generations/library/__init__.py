"""The team library: what the /library/ pages read (search, filters, the keyset cursor, stacks)."""
