"""Dataset readers, converters, validators and the content-hash cache.

``detection/`` (VOC and YOLO sets, converted once to YOLO) and ``imagefolder/``
(classification folders, cached as arrays) are the two kinds of data; both hand
trials a ``PreparedData`` (``prepared.py``). ``remote`` fetches ``s3://``
datasets into the cache; ``splits``, ``cache``, ``fingerprint``, ``report``,
``images`` and ``stain_mask`` are shared pieces.

Nothing here imports torch, nor any layer above (trainers, spaces, tuning,
tracking): data preparation runs on the driver before Ray starts.
"""
