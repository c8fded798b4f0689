"""corral's benchmark driver: measures corrald against baselines measured in the same run."""
