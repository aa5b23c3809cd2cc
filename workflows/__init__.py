"""Ready-to-run sagas, shaped like real work, that the demo and a worker node can load."""
