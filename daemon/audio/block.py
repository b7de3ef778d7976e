"""A block of captured audio stamped with its place in the stream.

`offset` counts 16 kHz samples from the start of the stream, whether they were analysed or not: idle time,
blocks dropped on a full queue and samples lost to a device overflow leave a gap between one block's `end`
and the next block's `offset`. Everything downstream takes time from offsets, never from counting what it saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daemon.transcript import Audio


@dataclass(frozen=True)
class Block:
    offset: int
    pcm: Audio = field(repr=False)

    @property
    def end(self) -> int:
        return self.offset + int(self.pcm.size)


END_OF_STREAM = Block(-1, np.zeros(0, dtype=np.float32))  # a finite source has ended (compared by identity)
