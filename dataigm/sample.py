"""The in-memory sample: image bytes plus its ``cls`` and record."""

from __future__ import annotations

import io
from dataclasses import dataclass

from .schema import IMAGE_EXTENSIONS, SchemaError, check_key

# PIL format name -> member extension
PIL_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


@dataclass
class Sample:
    """One image and its labels, as stored in a shard: ``KEY.<ext>``, ``KEY.cls``, ``KEY.json``."""

    key: str
    image: bytes
    ext: str
    cls: int
    record: dict

    def __post_init__(self) -> None:
        check_key(self.key)
        if self.ext not in IMAGE_EXTENSIONS:
            raise SchemaError(f"Image extension {self.ext!r} of {self.key!r}; valid: {', '.join(IMAGE_EXTENSIONS)}")

    def decode(self):
        """The image as an RGB ``PIL.Image``."""
        from PIL import Image

        with Image.open(io.BytesIO(self.image)) as img:
            return img.convert("RGB")
