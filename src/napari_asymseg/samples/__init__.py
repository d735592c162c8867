"""Sample data: deterministic synthetic lesion scans, the committed sample, the Colin27 builder."""
