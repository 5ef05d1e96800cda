"""Ray Tune driver for hwclf sweeps: the only place that imports Ray."""
