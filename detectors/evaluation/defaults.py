"""The evaluation's default backbones, in a module that imports nothing: the light config (no torch) and the metric
modules (torch) both read them from here."""

DEFAULT_DETECTOR = "fasterrcnn_mobilenet_v3_large_fpn"  # torchvision's COCO Faster R-CNN (person rate)
DEFAULT_CLIP = "openai/clip-vit-base-patch16"  # CLIP score and CSDR
