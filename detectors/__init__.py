"""Detectors: timm content judges trained on DataIGM shards. Filled in by the judges issue."""
