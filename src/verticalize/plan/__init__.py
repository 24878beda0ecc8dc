"""Resource planning (P3): parameters, FLOPs, peak memory, wall time and a recommendation
before training; the memory guard (T9) the train stage runs."""
