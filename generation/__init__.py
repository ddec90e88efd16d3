"""Generation: diffusers pipelines (and the toy world) -> DataIGM samples -> shards. Filled in by the generation issue."""
