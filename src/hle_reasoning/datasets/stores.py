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


def first_replacing(chunks):
    """``chunks`` with the first one marked to replace the store: a resumable table's stream,
    whose first chunk holds the stored records still valid and later chunks the new ones."""
    iterator = iter(chunks)
    first = next(iterator, None)
    if first is not None:
        yield replacing(first)
    yield from iterator
