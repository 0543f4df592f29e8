"""Semaphore: 10 workers, at most 3 at a time (Go README, Advanced Usage)."""

import asyncio

from asynctasklib import Semaphore

inside = 0  # workers holding a slot right now
peak = 0  # the most that ever held one at once


async def worker(sem: Semaphore, worker_id: int) -> None:
    global inside, peak
    async with sem:  # acquire a slot; released on the way out
        inside += 1
        peak = max(peak, inside)
        print(f"Worker {worker_id} processing")
        await asyncio.sleep(0.01)  # simulated work (1 s in the Go example)
        inside -= 1


async def main() -> None:
    sem = Semaphore(3)  # 3 slots
    async with asyncio.TaskGroup() as tg:
        for i in range(10):
            tg.create_task(worker(sem, i))


if __name__ == "__main__":
    asyncio.run(main())
