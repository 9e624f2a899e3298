"""The ``sdk`` peer of ``gridloop bench latency``: frequenz-sdk reacting to frequency steps.

Run by the benchmark in its own process (the SDK holds process-global state)::

    python -m controller.lab.bench_sdk_client URL N STEP_W NOMINAL_HZ

It connects the SDK to the simulator at ``URL``, waits until the battery pool's
power bounds cover ``N × STEP_W`` (with margin), prints ``READY`` and then, on the
first ``microgrid.frequency()`` sample of each step away from ``NOMINAL_HZ``
(more than 10 mHz, sign change), proposes ``±N × STEP_W`` to the battery pool
(over-frequency → charge, +). It runs until the benchmark terminates it.

Needs the ``bench`` extra (``frequenz-sdk``); the benchmark checks that first.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from datetime import timedelta

__all__ = ["main"]

_READY_TIMEOUT_S = 120.0
_DEADBAND_HZ = 0.01


async def _run(url: str, n: int, step_w: float, nominal_hz: float) -> None:
    from frequenz.quantities import Power
    from frequenz.sdk import microgrid
    from frequenz.sdk.timeseries import ResamplerConfig2

    await microgrid.initialize(url, ResamplerConfig2(resampling_period=timedelta(seconds=1.0)))
    pool = microgrid.new_battery_pool(priority=5)
    status_rx = pool.power_status.new_receiver()
    freq_rx = microgrid.frequency().new_receiver()
    async with asyncio.timeout(_READY_TIMEOUT_S):
        while True:
            status = await status_rx.receive()
            bounds = getattr(status, "bounds", None)
            upper = getattr(bounds, "upper", None)
            if upper is not None and upper.base_value >= n * step_w * 1.5:
                break
    gc.collect()
    gc.freeze()  # as gridloop does once started
    print("READY", flush=True)
    last = 0.0
    async for sample in freq_rx:
        if sample.value is None:
            continue
        deviation = sample.value.base_value - nominal_hz
        if not abs(deviation) > _DEADBAND_HZ:
            continue
        sign = 1.0 if deviation > 0 else -1.0
        if sign != last:
            last = sign
            await pool.propose_power(Power.from_watts(sign * n * step_w))


def main(argv: list[str]) -> int:
    """``URL N STEP_W NOMINAL_HZ``: run the SDK peer until terminated; returns the exit status."""
    if len(argv) != 4:
        sys.stderr.write(
            "usage: python -m controller.lab.bench_sdk_client URL N STEP_W NOMINAL_HZ\n"
        )
        return 2
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(_run(argv[0], int(argv[1]), float(argv[2]), float(argv[3])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
