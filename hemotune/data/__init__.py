"""Dataset readers, converters, validators and the content-hash cache.

Nothing here imports torch: data preparation runs on the driver before Ray starts.
"""
