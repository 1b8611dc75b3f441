"""mcbench harness: data, training, measuring, storing, CLI."""
