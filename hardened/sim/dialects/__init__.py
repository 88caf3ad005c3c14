"""Exchange dialects of the simulator: one module per ccxt exchange id, each exporting ``DIALECT``."""
