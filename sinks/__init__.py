"""Redis: the key layout (the contract), the dataflow's writer and the dashboard's reader; DLQ tooling."""
