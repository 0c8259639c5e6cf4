"""Trust in results: latent-space health (health, mmd, metrics), dropout evaluation, the montage doctor."""
