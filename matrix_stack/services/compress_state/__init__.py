"""compress-state: rewrites Synapse's state groups as short delta chains, each group verified against
its state before the rewrite commits."""
