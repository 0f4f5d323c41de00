"""Client-level differential privacy: DP-FedAvg's clipping and noise, and the accountant."""
