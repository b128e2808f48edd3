"""netlmm-example-strategy: an example third-party netlmm plugin."""
