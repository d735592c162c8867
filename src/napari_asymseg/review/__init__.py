"""Review: calibration of the model's margin, the false-negative risk map, and the ranked flags
with their state."""
