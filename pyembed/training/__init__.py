"""Fine-tuning from a collection's own data: training pairs, losses, the fit, recorded runs."""
