"""Training: the loop, its inputs, regimes, DDP, the cost estimate and the throughput tool."""
