"""Row blocks for the (B, N, V) passes of SLED and DoLa.

Each block of rows goes through all of its passes (softmax, differences, reductions) before the
next one starts, so the block's temporaries stay in the CPU cache and are reused from the
allocator instead of being fresh (page-faulting) allocations of B * N * V floats; the extra
memory of a call is O(block) on top of its inputs.
"""

from __future__ import annotations

BLOCK_ELEMENTS = 1 << 19


def row_blocks(rows: int, per_row: int, block: int = BLOCK_ELEMENTS) -> list[slice]:
    """Slices covering range(rows), each of at most max(1, block // per_row) rows."""
    step = max(1, block // max(per_row, 1))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]
