"""Where a scan lives on disk: the scan group, its one atomic writer, its lock, its geometry
and the annotation code."""
