"""Valid/ready stream components (spec 9, Amaranth ``lib.stream`` rules).

A transfer happens on a rising clock edge where ``valid`` and ``ready`` are both high; the
payload is held while ``valid`` is high and ``ready`` low. To be race-free on every simulator
(Verilator runs value callbacks after evaluating the edge, Icarus before), all components
**write** right after a rising edge and **sample** in the read-only phase after the falling edge,
where the values are exactly those the next rising edge will see.

- :class:`StreamDriver` sends payload words with random idle gaps (``valid`` low, junk payload);
- :class:`StreamMonitor` records every transfer and checks that the sender obeys the protocol
  (valid not withdrawn and payload not changed while stalled);
- :class:`Backpressure` drives a sink's ``ready`` low at random.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

__all__ = ["Backpressure", "StreamDriver", "StreamMonitor", "sample_phase"]


async def sample_phase(clk: Any) -> None:
    """Wait until the values the next rising edge of ``clk`` will see are settled."""
    await FallingEdge(clk)
    await ReadOnly()


def _bit(handle: Any) -> int:
    v = handle.value
    return int(v) if v.is_resolvable else 0


class StreamDriver:
    """Drives ``valid``/``payload`` of a stream sink port from a list of payload words.

    ``gap_prob`` is the probability of inserting an idle gap (1..``max_gap`` cycles with ``valid``
    low and a random junk payload) before each word.
    """

    def __init__(self, clk: Any, valid: Any, payload: Any, ready: Any, *, width: int, gap_prob: float = 0.0,
                 max_gap: int = 3, rng: random.Random | None = None):
        if not 0.0 <= gap_prob < 1.0:
            raise ValueError(f"gap_prob must be in [0, 1), got {gap_prob}")
        self.clk, self.valid, self.payload, self.ready = clk, valid, payload, ready
        self.width = width
        self.gap_prob, self.max_gap = gap_prob, max_gap
        self.rng = rng or random.Random(0)
        self.sent = 0
        self.idle_cycles = 0
        self.on_accept: Callable[[int], None] | None = None

    def idle(self) -> None:
        self.valid.value = 0
        self.payload.value = self.rng.getrandbits(self.width) if self.width else 0

    async def send(self, words: Sequence[int], *, max_cycles: int | None = None) -> int:
        """Send every word in order; returns right after the rising edge that accepted the last one.

        Must be called right after a rising edge (or before the first one). With ``max_cycles`` it
        gives up after that many cycles, leaving ``valid`` high (the caller resets or idles).
        Returns the number of words accepted.
        """
        cycles = 0
        done = 0
        for word in words:
            if self.gap_prob and self.rng.random() < self.gap_prob:
                for _ in range(self.rng.randint(1, self.max_gap)):
                    self.idle()
                    self.idle_cycles += 1
                    cycles += 1
                    await RisingEdge(self.clk)
            self.valid.value = 1
            self.payload.value = word
            while True:
                if max_cycles is not None and cycles >= max_cycles:
                    return done
                await sample_phase(self.clk)
                accepted = _bit(self.ready)
                await RisingEdge(self.clk)
                cycles += 1
                if accepted:
                    break
            if self.on_accept is not None:
                self.on_accept(self.sent)
            self.sent += 1
            done += 1
        self.idle()
        return done


class StreamMonitor:
    """Records every transfer of a stream (payload words, in order) and checks sender protocol rules."""

    def __init__(self, clk: Any, valid: Any, payload: Any, ready: Any, *, name: str = "o",
                 callback: Callable[[int], None] | None = None):
        self.clk, self.valid, self.payload, self.ready = clk, valid, payload, ready
        self.name = name
        self.callback = callback
        self.words: list[int] = []
        self.protocol_errors: list[str] = []
        self.cycles = 0
        self.enabled = True

    async def run(self) -> None:
        """Monitor forever (start with ``cocotb.start_soon``)."""
        stalled_word: int | None = None
        while True:
            await sample_phase(self.clk)
            self.cycles += 1
            if not self.enabled:
                stalled_word = None
                continue
            valid = _bit(self.valid)
            if not valid:
                if stalled_word is not None:
                    self.protocol_errors.append(f"{self.name}: valid withdrawn while stalled (cycle {self.cycles})")
                stalled_word = None
                continue
            word = self.payload.value.to_unsigned() if self.payload.value.is_resolvable else -1
            if stalled_word is not None and word != stalled_word:
                self.protocol_errors.append(f"{self.name}: payload changed while stalled (cycle {self.cycles})")
            if _bit(self.ready):
                stalled_word = None
                self.words.append(word)
                if self.callback is not None:
                    self.callback(word)
            else:
                stalled_word = word


class Backpressure:
    """Drives a sink's ``ready``: low with probability ``stall_prob`` each cycle (0 = always ready)."""

    def __init__(self, clk: Any, ready: Any, *, stall_prob: float = 0.0, rng: random.Random | None = None):
        if not 0.0 <= stall_prob < 1.0:
            raise ValueError(f"stall_prob must be in [0, 1), got {stall_prob}")
        self.clk, self.ready, self.stall_prob = clk, ready, stall_prob
        self.rng = rng or random.Random(1)
        self.stalls = 0

    async def run(self) -> None:
        """Drive ``ready`` forever (start with ``cocotb.start_soon``)."""
        self.ready.value = 1
        while True:
            await RisingEdge(self.clk)
            if self.stall_prob and self.rng.random() < self.stall_prob:
                self.ready.value = 0
                self.stalls += 1
            else:
                self.ready.value = 1
