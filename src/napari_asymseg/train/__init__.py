"""Training on a scan's annotations: events, device and precision, data and patches, the loop,
the step, validation, model folders, torchrun."""
