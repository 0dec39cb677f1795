"""Opening images safely: PIL's own ``Image.open``, whatever other libraries did to it."""

from __future__ import annotations

import sys
from typing import Any


def pil_open() -> Any:
    """PIL's own ``Image.open``, even after Ultralytics replaced it.

    Ultralytics (``ultralytics.utils.patches``) swaps ``PIL.Image.open`` for a wrapper that,
    on a file PIL cannot identify, runs its requirements check for ``pi-heif`` (a pip install
    when it believes it is online) and then fails with ``ModuleNotFoundError``. A corrupt file
    must simply be reported, so every hemotune reader calls the original.
    """
    from PIL import Image

    opener = Image.open
    patches = sys.modules.get("ultralytics.utils.patches")
    if patches is not None and getattr(opener, "__module__", "") == patches.__name__:
        opener = getattr(patches, "_image_open", opener)
    return opener
