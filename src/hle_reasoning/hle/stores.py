"""The contract between nodes that stream records and the store that appends them.

A generator node yields DataFrames that ``hle_reasoning.datasets.JSONLinesStore`` appends one by
one; a chunk whose ``attrs[REPLACE]`` is true replaces the store instead (how a node drops stale
records before appending new ones).
"""

REPLACE = "replace"


def replacing(frame):
    """``frame`` marked to replace the store rather than extend it."""
    frame.attrs[REPLACE] = True
    return frame
