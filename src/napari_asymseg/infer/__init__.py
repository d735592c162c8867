"""Prediction: the streamed sliding window, the predictor of one scan's results, the whole-scan
prediction and its dask scale-out."""
