"""How pending chunks go to the model: their order, and the batch size after running out of memory."""

from __future__ import annotations

from dataclasses import dataclass

RECOVER_AFTER_BATCHES = 8  # batches at a reduced size after running out of memory before trying larger
LENGTH_WINDOW_BATCHES = 16  # length ordering sorts this many batches at a time, so chapters finish as we go


@dataclass
class BatchSizer:
    """The batch size in use: halved on out-of-memory, grown back after a calm stretch."""

    wanted: int
    current: int = 0
    calm_left: int = 0
    clean_takes: int = 0  # a stream's takes finished since the size last changed (``takes_done``)

    def __post_init__(self) -> None:
        self.current = self.current or self.wanted

    def shrink(self, failed_size: int) -> str:
        smaller = max(1, failed_size // 2)
        self.calm_left, self.clean_takes = RECOVER_AFTER_BATCHES, 0
        if smaller < self.current:
            self.current = smaller
        return (f"Out of GPU memory with a batch of {failed_size}; splitting it and going on with batches of "
                f"{self.current} for the next {RECOVER_AFTER_BATCHES} batches.")

    def batch_done(self) -> str:
        if self.current >= self.wanted:
            return ""
        self.calm_left -= 1
        if self.calm_left > 0:
            return ""
        self.current = min(self.wanted, self.current * 2)
        self.calm_left = RECOVER_AFTER_BATCHES
        return f"Trying batches of {self.current} again."

    def takes_done(self, takes: int, slots: int) -> str:
        """For a stream, where takes end one by one: count ``takes`` that finished with ``slots`` slots without
        running out of memory. Each ``slots`` of them count as one calm batch; the message when the size grew."""
        self.clean_takes += takes
        while self.clean_takes >= slots and self.current < self.wanted:
            self.clean_takes -= slots
            grown = self.batch_done()
            if grown:
                self.clean_takes = 0
                return grown
        return ""


def order_for_batches(ids: list[str], texts: dict[str, str], batch_order: str, batch_size: int) -> list[str]:
    """Pending chunk ids in the order they go to the model.

    "book" keeps reading order. "length" sorts each window of ``LENGTH_WINDOW_BATCHES``
    batches longest first, so a batch holds chunks of similar length (it runs until its
    longest ends) while chapters still finish as the render goes.
    """
    if batch_order == "book":
        return list(ids)
    window = max(1, batch_size * LENGTH_WINDOW_BATCHES)
    out: list[str] = []
    for w in range(0, len(ids), window):
        out += sorted(ids[w : w + window], key=lambda i: -len(texts[i]))
    return out
