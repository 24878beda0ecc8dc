"""Training: the explicit Accelerate loop, schedules, checkpoints and metric logs."""
