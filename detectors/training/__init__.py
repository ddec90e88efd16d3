"""Judge training on DataIGM shards (``dataigm judge train``): probe or finetune, calibrate, save."""
